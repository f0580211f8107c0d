-- Instruction-likeness margins of catalog sentences (recsys/textsafety/margins.py): what the
-- embedding-based instruction scorer (recsys/textsafety/instruction.py) found for each
-- sentence of item text, so that a sentence is embedded once per scorer version for the
-- whole deployment — by the enrich worker when the item is written (with the LLM on), or
-- by the first serve process that quotes it — instead of once per serve process and start.
--   scorer:   the scorer's version (model, k and exemplars hashed): margins of another
--             version are never read;
--   sentence: the sentence as scored (catalog text only: queries are never stored here);
--   margin:   mean cosine to the k nearest instruction exemplars minus that to the k nearest
--             ordinary ones (the threshold is applied when reading, so it can change).
CREATE TABLE instruction_margins (
    scorer     text NOT NULL,
    sentence   text NOT NULL,
    margin     real NOT NULL,
    scored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scorer, sentence)
);
