"""Conversational recommendation: preferences elicited turn by turn, grounded in the dialogue.

* :mod:`.signals` — what a conversation knows (preference signals with their source turn)
  and the state folded from its stored turns;
* :mod:`.attributes` — the item attributes a question can ask about, read from items,
  and the entropy of the current candidates over each;
* :mod:`.reading` / :mod:`.llm_reading` — what one turn says (rules; the LLM with a JSON
  schema, validated, the rules as fallback);
* :mod:`.policy` — ask the most informative question, or recommend;
* :mod:`.grounding` — the stated preferences an item satisfies (the evidence contract);
* :mod:`.store` — turns in Postgres, written once per (user, conversation, turn);
* :mod:`.engine` — one turn end to end over the serving recommender.
"""
