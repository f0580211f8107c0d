"""The model: a GGUF file loaded by transformers, and one generation loop.

``transformers`` reads the GGUF file (``gguf_file=``, with the ``gguf`` package) and
dequantises it to float32 — ≈ 17 s for SmolLM2-135M on this machine, once per
process. Generation is a plain loop over the model with its KV cache, one token at
a time, so that each step can apply the request's grammar mask
(:class:`~stack.local_llm.grammar.Constraint`), the penalties and the stop rules,
and can be cancelled between two tokens when the client has gone away. Tokens the
grammar forces (a JSON object's keys and punctuation, the only value an enum leaves)
are not sampled one by one: they are appended and fed with the next forward pass
(jump-forward decoding), which saves a forward pass per forced token.

Prompts of one use case share a long prefix (system message, worked examples), so the
KV cache of recent requests is kept (a few slots) and a new request reuses the longest
common prefix, computing only the rest — llama.cpp's prompt cache, in small. Token
counts are the model tokenizer's own: ``prompt_tokens`` is the length of the
chat-templated prompt, ``completion_tokens`` the tokens generated (the end-of-turn
token excluded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from stack.local_llm.exceptions import InvalidRequest
from stack.local_llm.grammar import Constraint, GrammarCompiler, strict_json
from stack.local_llm.model_file import ModelFile

__all__ = ["Generation", "LocalModel", "SamplingParams"]

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token (OpenAI's request fields, plus llama.cpp's repeat penalty)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_penalty: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """One completion."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    prefill_s: float
    decode_s: float
    #: completion tokens the grammar forced (fed without sampling)
    forced_tokens: int = 0
    #: prompt tokens whose KV state came from the prefix cache (not computed)
    reused_tokens: int = 0


class LocalModel:
    """A causal LM loaded once, generating for one request at a time."""

    def __init__(self, model_file: ModelFile, *, threads: int = 2) -> None:
        self.file = model_file
        self.threads = threads
        self.load_s = 0.0
        self._tokenizer: Any = None
        self._model: Any = None
        self._grammars: GrammarCompiler | None = None
        self.eos_ids: list[int] = []
        self.n_ctx = 2048
        self.n_params = 0
        self.cache_slots = 4
        self._slots: list[tuple[list[int], Any]] = []
        self.reused_tokens = 0

    @property
    def name(self) -> str:
        """The model name (the GGUF file name without its suffix)."""
        return self.file.name

    def load(self) -> None:
        """Read and dequantise the GGUF file (slow: tens of seconds)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        torch.set_num_threads(self.threads)
        started = time.monotonic()
        folder, name = str(self.file.path.parent), self.file.path.name
        self._tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        self._model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        ).eval()
        config = self._model.config
        eos: set[int] = set()
        generation_eos = self._model.generation_config.eos_token_id
        if isinstance(generation_eos, int):
            eos.add(generation_eos)
        elif generation_eos:
            eos.update(generation_eos)
        for token in ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>"):
            token_id = self._tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self._tokenizer.unk_token_id:
                eos.add(token_id)
        self.eos_ids = sorted(eos)
        self.n_ctx = int(getattr(config, "max_position_embeddings", 2048))
        self.n_params = int(self._model.num_parameters())
        self._grammars = GrammarCompiler(self._tokenizer, int(config.vocab_size), self.eos_ids)
        self.load_s = time.monotonic() - started
        log.info(
            "loaded %s (%d parameters, context %d, eos %s) in %.1fs",
            self.name,
            self.n_params,
            self.n_ctx,
            self.eos_ids,
            self.load_s,
        )

    # ---- requests ---------------------------------------------------------------------
    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The chat-templated prompt's token ids."""
        if self._tokenizer is None:
            raise RuntimeError("the model is not loaded")
        try:
            ids = self._tokenizer.apply_chat_template(
                [dict(m) for m in messages], add_generation_prompt=True, tokenize=True
            )
        except Exception as exc:  # jinja errors on odd roles or contents
            raise InvalidRequest(f"messages do not fit the chat template: {exc}") from exc
        return list(ids)

    def constraint(self, response_format: Mapping[str, Any] | None) -> Constraint | None:
        """The grammar of ``response_format`` (raises :class:`InvalidRequest`)."""
        assert self._grammars is not None, "the model is not loaded"
        return self._grammars.compile(response_format)

    def generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        constraint: Constraint | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Generate up to ``params.max_tokens`` tokens after ``prompt``.

        Raises:
            InvalidRequest: the prompt and ``max_tokens`` do not fit the context.
        """
        if len(prompt) + params.max_tokens > self.n_ctx:
            raise InvalidRequest(
                f"this model's context is {self.n_ctx} tokens; the messages take "
                f"{len(prompt)} and max_tokens asks for {params.max_tokens}",
                param="messages",
                code="context_length_exceeded",
            )
        generator = torch.Generator()
        if params.seed is not None:
            generator.manual_seed(params.seed)
        else:
            generator.seed()
        eos = set(self.eos_ids)
        out: list[int] = []
        counts: dict[int, int] = {}
        finish: FinishReason = "length"
        started = time.monotonic()
        past, reused = self._reuse(prompt)
        self.reused_tokens += reused
        forced_total = 0
        fed = list(prompt[:reused])  # the tokens the cache holds
        inputs = torch.tensor([prompt[reused:]])
        prefill_s = 0.0
        text = ""
        with torch.inference_mode():
            while len(out) < params.max_tokens:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                step = self._model(input_ids=inputs, past_key_values=past, use_cache=True)
                past = step.past_key_values
                fed.extend(inputs[0].tolist())
                if not out:
                    prefill_s = time.monotonic() - started
                logits = step.logits[0, -1, :].float()
                logits = _penalise(logits, counts, params)
                if constraint is not None:
                    logits = constraint.mask(logits)
                token = _pick(logits, params, generator)
                if token in eos:
                    finish = "stop"
                    break
                out.append(token)
                counts[token] = counts.get(token, 0) + 1
                step_tokens = [token]
                if constraint is not None:
                    constraint.consume(token)
                    # tokens the grammar forces next (JSON keys, punctuation) are not
                    # sampled: they join the next forward pass (jump-forward decoding)
                    forced = constraint.forced()[: params.max_tokens - len(out)]
                    if forced:
                        constraint.consume_many(forced)
                        out.extend(forced)
                        for t in forced:
                            counts[t] = counts.get(t, 0) + 1
                        step_tokens += forced
                        forced_total += len(forced)
                    if constraint.finished:
                        finish = "stop"
                        break
                if params.stop:
                    text = self._tokenizer.decode(out, skip_special_tokens=True)
                    cut = _first_stop(text, params.stop)
                    if cut is not None:
                        text = text[:cut]
                        finish = "stop"
                        break
                inputs = torch.tensor([step_tokens])
        if finish != "cancelled":
            self._keep(fed, past)
        if not (params.stop and finish == "stop"):
            text = self._tokenizer.decode(out, skip_special_tokens=True)
        if constraint is not None and finish == "stop":
            text = strict_json(text)
        return Generation(
            text=text,
            prompt_tokens=len(prompt),
            completion_tokens=len(out),
            finish_reason=finish,
            prefill_s=prefill_s,
            decode_s=time.monotonic() - started - prefill_s,
            forced_tokens=forced_total,
            reused_tokens=reused,
        )

    def _reuse(self, prompt: list[int]) -> tuple[Any, int]:
        """The cached KV state sharing the longest prefix with ``prompt`` (cropped to it),
        and that prefix's length; a fresh cache and 0 when none shares 16 tokens."""
        from transformers import DynamicCache

        best, best_len = -1, 0
        for i, (tokens, _) in enumerate(self._slots):
            n = _common_prefix(tokens, prompt)
            if n > best_len:
                best, best_len = i, n
        if best < 0 or best_len < 16:
            return DynamicCache(), 0
        _, cache = self._slots.pop(best)
        keep = min(best_len, len(prompt) - 1)  # at least one token to compute logits from
        cache.crop(keep)
        return cache, keep

    def _keep(self, tokens: list[int], cache: Any) -> None:
        if cache is None or self.cache_slots <= 0:
            return
        self._slots.insert(0, (tokens, cache))
        del self._slots[self.cache_slots :]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _penalise(
    logits: torch.Tensor, counts: Mapping[int, int], params: SamplingParams
) -> torch.Tensor:
    """OpenAI's frequency/presence penalties and llama.cpp's repeat penalty, over the
    tokens generated so far (never the prompt: it quotes the data the answer uses)."""
    if not counts or (
        params.frequency_penalty == 0
        and params.presence_penalty == 0
        and params.repeat_penalty == 1
    ):
        return logits
    ids = torch.tensor(list(counts))
    n = torch.tensor([float(c) for c in counts.values()])
    picked = logits[ids]
    if params.repeat_penalty != 1:
        picked = torch.where(
            picked > 0, picked / params.repeat_penalty, picked * params.repeat_penalty
        )
    picked = picked - params.frequency_penalty * n - params.presence_penalty
    logits = logits.clone()
    logits[ids] = picked
    return logits


def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1:
        ordered, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(ordered, dim=-1) - ordered < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
