"""The frozen Hugging Face encoder: loading, fingerprint, tokenizing into windows, forward."""

from __future__ import annotations

import contextlib
import pickle  # for its error class only: nothing is unpickled here
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featstore.featurize import cpu_features, openvino_runtime
from featstore.featurize.attention import use_fused_attention
from featstore.featurize.errors import EncoderError
from featstore.featurize.hub_access import check_model_source
from featstore.featurize.model_names import (
    ALL_FEATURES,
    FEATURIZER_VERSION,
    LAYERED_FEATURES,
    resolve_model,
)
from featstore.featurize.openvino_runtime import OpenVinoForward
from featstore.featurize.precision import TO_REFERENCE, deviation, same_up_to_summation_order
from featstore.featurize.reductions import reduce_hidden_states
from featstore.featurize.st_config import read_st_config
from featstore.store import fingerprint_id
from featstore.store.hashing import sha256_tree

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
RUNTIMES = ("auto", "torch", "openvino")
# `--runtime auto` converts to OpenVINO only for passes at least this long: the conversion and
# compilation cost seconds once per model and process
OPENVINO_MIN_TEXTS = 2000
# texts of several lengths, so the probe batch is padded as real batches are
_PROBE_TEXTS = ("my card was lost", "refund please", "where is the money i sent to my friend")
_LAST_TOKEN_TYPES = {"xlnet", "gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "opt"}


def auto_takes_openvino(texts: int | None, device: str, compute_dtype: str) -> bool:
    """`--runtime auto`'s choice, measured with bench/featurize_vs_st.py: OpenVINO's CPU
    kernels beat torch's in float32 (MiniLM 474 vs 379 texts/s) and, by the peer's figures, in
    bf16 on AVX512-BF16 alone, while on AMX-BF16 torch's oneDNN kernels matched or beat them
    (all-mpnet-base-v2 311 vs 260 texts/s) at half the memory. Short passes stay on torch:
    compiling costs seconds."""
    if device != "cpu" or texts is None or texts < OPENVINO_MIN_TEXTS:
        return False
    return not (compute_dtype == "bfloat16" and cpu_features.cpu_has_amx_bf16())


def _model_files(root: Path, weights: bool) -> list[Path]:
    """The weight files of a model directory, or every other (tokenizer, config) file."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
            and (p.suffix in _WEIGHT_SUFFIXES) == weights]


def model_files_state(root: Path) -> list[tuple]:
    """The files a fingerprint hashes, each with its inode, size, mtime and ctime: a file
    replaced, rewritten, added or removed changes this (and no one can set a ctime back)."""
    out: list[tuple] = []
    for p in sorted(root.rglob("*")):
        if p.name.startswith("."):
            continue
        try:
            st = p.stat()
        except OSError:  # gone while listing: a change under way
            out.append((p.as_posix(), None))
            continue
        if p.is_file():
            out.append((p.relative_to(root).as_posix(), st.st_ino, st.st_size, st.st_mtime_ns,
                        st.st_ctime_ns))
    return out


def _hash_model_dir(root: Path) -> tuple[str, str]:
    """(weights SHA-256, SHA-256 of every other file: tokenizer, config) of a model directory."""
    return (sha256_tree(root, _model_files(root, weights=True)),
            sha256_tree(root, _model_files(root, weights=False)))


def parse_layers(spec: str | Sequence[int], n_hidden_states: int) -> list[int]:
    """'all' or a comma list (negative counts from the top) -> sorted layer numbers."""
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            return list(range(n_hidden_states))
        try:
            wanted = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise EncoderError(f"--layers must be 'all' or integers like 0,6,-1, not {spec!r}"
                               ) from None
    else:
        wanted = list(spec)
    out = set()
    for layer in wanted:
        if not -n_hidden_states <= layer < n_hidden_states:
            raise EncoderError(f"layer {layer} does not exist: the model has hidden states "
                               f"0..{n_hidden_states - 1}")
        out.add(layer % n_hidden_states)
    if not out:
        raise EncoderError("--layers selects no layer")
    return sorted(out)


@dataclass
class Windows:
    """Token windows of a list of texts; `owner[i]` is the text window i belongs to."""
    input_ids: list[list[int]]
    owner: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64,
                           count=len(self.input_ids))


class Encoder:
    """A frozen encoder with the settings that decide its features (its fingerprint)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        max_length: int | None = None,
        stride: int | None = None,
        truncate: bool = False,
        layers: str | Sequence[int] = "all",
        features: Sequence[str] | None = LAYERED_FEATURES,
        dtype: str = "float16",
        compute_dtype: str = "auto",
        runtime: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        """`features`: None means cls, mean, max and the pooler where the model has one.
        `runtime`: `torch`, `openvino` (featstore.featurize.openvino_runtime), or `auto`
        (OpenVINO where it is installed and serves this model, else torch)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.name, self.source = resolve_model(model)
        check_model_source(self.name, self.source)
        self.device = _pick_device(device)
        # The fingerprint must describe exactly the weights loaded: the files are hashed
        # while they load (on another core: hashlib and file reads release the GIL; a
        # base-size model takes ~0.3 s), and refused if any of them changed (by identity,
        # below) from before the hash began until both the hash and the model are done.
        local = Path(self.source).is_dir()
        before = model_files_state(Path(self.source)) if local else None
        hashing = None
        if local:
            pool = ThreadPoolExecutor(1)
            hashing = pool.submit(_hash_model_dir, Path(self.source))
            pool.shutdown(wait=False)
        try:
            config = AutoConfig.from_pretrained(self.source, trust_remote_code=trust_remote_code)
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.source, trust_remote_code=trust_remote_code)
            with _no_loading_bars():
                net, info = AutoModel.from_pretrained(self.source, config=config,
                                                      trust_remote_code=trust_remote_code,
                                                      output_loading_info=True)
        except pickle.UnpicklingError:
            # torch.load(weights_only=True) met pickled objects that are not plain tensors.
            raise EncoderError(f"cannot load model {self.name!r}: its weights file holds "
                               "pickled objects other than tensors, which featstore never "
                               "unpickles; use a safetensors checkpoint") from None
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderError(f"cannot load model {self.name!r}: {first}") from None
        try:
            self._hashes = hashing.result() if hashing is not None else None
            vanished = False
        except OSError:  # a file listed for hashing was gone when it was read
            vanished = True
        if local and (vanished or model_files_state(Path(self.source)) != before):
            raise EncoderError(f"the files of model {self.name} changed while it was loading "
                               "(a training run saving a checkpoint?); nothing was written: run "
                               "again once they stay unchanged")
        if getattr(config, "is_encoder_decoder", False):
            net = net.get_encoder()
        self.model = net.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.config = config
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        limits = [x for x in (getattr(config, "max_position_embeddings", None),
                              self.tokenizer.model_max_length) if x and x < 1_000_000]
        limit = min(limits) if limits else 512
        if config.model_type in ("roberta", "xlm-roberta", "camembert"):
            limit = min(limit, config.max_position_embeddings - 2)
        # a sentence-transformers directory says which length it was trained for
        st = read_st_config(self.source) if local else None
        trained = st.max_seq_length if st is not None and st.max_seq_length else None
        self.max_length = int(max_length or min(limit, trained or 512))
        if self.max_length > limit:
            raise EncoderError(f"--max-length {self.max_length} exceeds the model's limit {limit}")
        specials = self.tokenizer.num_special_tokens_to_add(pair=False)
        if self.max_length <= specials + 1:
            raise EncoderError(f"--max-length {self.max_length} leaves no room for text")
        self.stride = int(stride if stride is not None else min(64, self.max_length // 4))
        if not 0 <= self.stride < self.max_length - specials:
            raise EncoderError(f"--stride must be between 0 and {self.max_length - specials - 1}")
        self.truncate = truncate
        if not truncate and not self.tokenizer.is_fast:
            raise EncoderError(f"model {self.name!r} has no fast tokenizer, which windows need; "
                               "pass --truncate to cut long texts instead")
        # Funnel pools the sequence once per block and fails on inputs too short for that.
        blocks = getattr(config, "block_sizes", None) if config.model_type == "funnel" else None
        self.min_length = 2 ** (len(blocks) - 1) + 1 if blocks else 1
        self.padding_invariant = blocks is None
        probe = self._probe()
        self.n_hidden_states = len(probe)
        self.layers = parse_layers(layers, self.n_hidden_states)
        self.hidden = int(probe[-1].shape[-1])
        # A pooler whose weights are not in the checkpoint is random: never store it.
        self.has_pooler = getattr(self.model, "pooler", None) is not None and not any(
            "pooler" in k for k in info.get("missing_keys", []))
        if features is None:
            features = [*LAYERED_FEATURES, *(["pooler"] if self.has_pooler else [])]
        unknown = set(features) - set(ALL_FEATURES)
        if unknown:
            raise EncoderError(f"unknown feature(s) {', '.join(sorted(unknown))}; "
                               f"choose from {', '.join(ALL_FEATURES)}")
        if "pooler" in features and not self.has_pooler:
            raise EncoderError(f"model {self.name!r} has no pooler; drop 'pooler' from --features")
        self.features = [f for f in ALL_FEATURES if f in features]
        if dtype not in ("float16", "float32"):
            raise EncoderError(f"--dtype must be float16 or float32, not {dtype!r}")
        self.dtype = dtype
        self.compute_dtype = _compute_dtype(compute_dtype, self.device)
        self.cls_last = (config.model_type in _LAST_TOKEN_TYPES
                         or self.tokenizer.padding_side == "left")
        self._separate_cls = bool(getattr(config, "separate_cls", True))
        self._truncate_seq = bool(getattr(config, "truncate_seq", False))
        self._fingerprint: dict | None = None
        if runtime not in RUNTIMES:
            raise EncoderError(f"--runtime must be {', '.join(RUNTIMES)}, not {runtime!r}")
        self._runtime_asked = runtime
        self._probe_states = probe
        self.runtime: str | None = None  # settled by `prepare`, once
        self._openvino: OpenVinoForward | None = None
        self.fast_linears = 0
        self.fused_attention = False  # featstore.featurize.attention in use
        self.half_weights = False
        if runtime == "torch":
            self.prepare()

    def prepare(self, texts: int | None = None) -> str:
        """Settle what runs the forward pass, once, given how many texts the pass will encode:
        `auto`: see `auto_takes_openvino`; torch where OpenVINO does not serve the model."""
        if self.runtime is not None:
            return self.runtime
        asked = self._runtime_asked
        if asked == "openvino" or (asked == "auto" and auto_takes_openvino(
                texts, self.device.type, self.compute_dtype_name)):
            self._openvino = self._load_openvino(asked == "openvino")
        if self._openvino is not None:
            self.runtime = "openvino"
            return self.runtime
        self.runtime = "torch"
        if self.device.type == "cpu":  # checked in float32, before any cast
            self.fused_attention = use_fused_attention(self.model, self._padded_probe)
        if self.device.type == "cpu" and self.compute_dtype is None:
            self.fast_linears = _use_onednn_linears(self.model, self._probe_states, self._probe)
        # On a CPU, bf16 weights cast once beat autocast, which converts every activation at
        # every linear layer and back; reductions still accumulate in float32.
        self.half_weights = self.device.type == "cpu" and self.compute_dtype == torch.bfloat16
        if self.half_weights:
            self.model.to(torch.bfloat16)
        return self.runtime

    def _load_openvino(self, asked: bool) -> OpenVinoForward | None:
        """The OpenVINO forward where it serves this encoder (checked against the float32
        torch model on a probe batch, within the compute dtype's contract); else None under
        `auto`, and one line when it was asked for."""
        why = openvino_runtime.supports(self.config.model_type, self.cls_last,
                                        self.device.type, self.compute_dtype_name)
        try:
            if why is not None:
                raise EncoderError(why)
            layered = [f for f in self.features if f != "pooler"]
            ov = OpenVinoForward(self.model, self.fingerprint, self.layers, layered,
                                 "pooler" in self.features, self.compute_dtype_name,
                                 threads=torch.get_num_threads())
            ids, mask = self._probe_batch()
            got = ov(ids.numpy(), mask.numpy())
            with torch.inference_mode():
                out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                want = reduce_hidden_states([out.hidden_states[i] for i in self.layers], mask,
                                            layered, torch.zeros_like(mask[:, 0]))
                if "pooler" in self.features:
                    want["pooler"] = out.pooler_output
            bound = TO_REFERENCE[self.compute_dtype_name]
            for name, value in want.items():
                dev = deviation(value.float().numpy(), got[name])
                if not dev.within(bound):
                    raise EncoderError(f"its {name} vectors differ from torch's ({dev})")
        except EncoderError as exc:
            if asked:
                raise EncoderError(f"--runtime openvino cannot serve model {self.name!r}: "
                                   f"{exc}; pass --runtime torch") from None
            return None
        return ov

    def _probe_batch(self, times: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The probe texts, each repeated `times`, padded as real batches are (on the host)."""
        return self._pad([self.tokenizer(" ".join([t] * times), truncation=True,
                                         max_length=self.max_length)["input_ids"]
                          for t in _PROBE_TEXTS])

    def _padded_probe(self) -> list[torch.Tensor]:
        """Hidden states of two padded batches, short texts and the same texts thrice (longer
        than 16 tokens), at their real positions: what an execution change must leave as it
        was, at the lengths where featstore's attention takes different paths."""
        out: list[torch.Tensor] = []
        for times in (1, 3):
            ids, mask = self._probe_batch(times)
            ids, mask = to_device(ids, self.device), to_device(mask, self.device)
            with torch.inference_mode():
                states = self.model(input_ids=ids, attention_mask=mask,
                                    output_hidden_states=True).hidden_states
            out.extend(h[mask.bool()] for h in states)
        return out

    def _probe(self) -> tuple[torch.Tensor, ...]:
        """Hidden states of a one-word input: counts layers for any architecture."""
        ids = self.tokenizer(" ".join(["a"] * self.min_length), return_tensors="pt")["input_ids"]
        ids = ids.to(self.device)
        with torch.inference_mode():
            return self.model(input_ids=ids, output_hidden_states=True).hidden_states

    @property
    def compute_dtype_name(self) -> str:
        """The precision the encoder computes in, as recorded in each shard."""
        return str(self.compute_dtype or torch.float32).removeprefix("torch.")

    # -- identity -----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> dict:
        """What decides the stored values; device and compute precision are left out on purpose
        (they move values within storage tolerance, and a store must stay usable across both)."""
        if self._fingerprint is None:
            if self._hashes is not None:
                weights, tokenizer = self._hashes
            else:
                rev = getattr(self.config, "_commit_hash", None) or "unknown"
                weights = tokenizer = f"revision:{rev}"
            self._fingerprint = {
                "kind": "encoder",
                "featurizer_version": FEATURIZER_VERSION,
                "model": self.name,
                "model_type": self.config.model_type,
                "weights_sha256": weights,
                "tokenizer_sha256": tokenizer,
                "max_length": self.max_length,
                "stride": self.stride,
                "truncate": self.truncate,
                "dtype": self.dtype,
                "layers": self.layers,
                "hidden": self.hidden,
                "cls_position": "last" if self.cls_last else "first",
            }
        return self._fingerprint

    @property
    def encoder_id(self) -> str:
        """The id a store gives these features when it does not hold them yet."""
        return fingerprint_id(self.name, self.fingerprint)

    def feature_shapes(self, tokens: bool = False) -> dict[str, list[int]]:
        shapes = {f: [len(self.layers), self.hidden] for f in self.features if f != "pooler"}
        if "pooler" in self.features:
            shapes["pooler"] = [self.hidden]
        if tokens:
            shapes["tokens"] = [len(self.layers), self.hidden]
        return shapes

    # -- work ---------------------------------------------------------------------------------
    def windows(self, texts: Sequence[str]) -> Windows:
        """Tokenize; texts beyond max_length become overlapping windows unless truncating."""
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length,
            stride=0 if self.truncate else self.stride,
            return_overflowing_tokens=not self.truncate, padding=False,
            return_attention_mask=False, return_token_type_ids=False)
        owner = (np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
                 if not self.truncate else np.arange(len(texts), dtype=np.int64))
        return Windows(enc["input_ids"], owner)

    def _pad(self, input_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad a batch to its longest window, on the tokenizer's padding side: what
        `tokenizer.pad` returns, in numpy (the tokenizer's Python loop cost ~10% of a pass)."""
        lengths = [len(x) for x in input_ids]
        width = max(max(lengths), self.min_length)
        ids = np.full((len(lengths), width), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(lengths), width), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for i, (row, n) in enumerate(zip(input_ids, lengths, strict=True)):
            span = slice(width - n, width) if left else slice(0, n)
            ids[i, span] = row
            mask[i, span] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def forward(self, input_ids: Sequence[Sequence[int]], tokens: bool = False
                ) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None]:
        """Features of a batch of windows: {feature: [batch, layers, hidden]} plus, if asked,
        each window's token states [n_tokens, layers, hidden] (padding removed)."""
        host_ids, host_mask = self._pad(input_ids)
        self.prepare()
        if self._openvino is not None:
            if tokens:
                raise EncoderError("--tokens needs --runtime torch (OpenVINO returns pooled "
                                   "rows only)")
            out_np = np.float16 if self.dtype == "float16" else np.float32
            feats = self._openvino(host_ids.numpy(), host_mask.numpy())
            return {k: v.astype(out_np) for k, v in feats.items()}, None
        ids = to_device(host_ids, self.device)
        mask = to_device(host_mask, self.device)
        out_dtype = torch.float16 if self.dtype == "float16" else torch.float32
        autocast = None if self.half_weights else self.compute_dtype
        with torch.inference_mode(), _autocast(self.device, autocast):
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            # Half-precision states stay so: the reductions accumulate in float32 themselves.
            states = [out.hidden_states[i] for i in self.layers]
            if self.cls_last:
                cls_index = (mask.sum(1) - 1 if self.tokenizer.padding_side == "right"
                             else torch.full_like(mask[:, 0], mask.shape[1] - 1))
            else:
                cls_index = torch.zeros_like(mask[:, 0])
            layered = [f for f in self.features if f != "pooler"]
            red = reduce_hidden_states(states, mask, layered, cls_index,
                                self._separate_cls, self._truncate_seq)
            if "pooler" in self.features:
                red["pooler"] = out.pooler_output.float()
            result = to_host({k: v.to(out_dtype) for k, v in red.items()})
            token_rows = None
            if tokens:
                if any(s.shape[1] != mask.shape[1] for s in states):
                    raise EncoderError("--tokens needs layers that keep the sequence length; "
                                       "choose such layers with --layers")
                full = torch.stack(states, dim=2).to(out_dtype).cpu().numpy()
                lens = mask.sum(1).cpu().numpy()
                keep = mask.bool().cpu().numpy()
                token_rows = [full[i][keep[i]] for i in range(len(lens))]
        return result, token_rows


@contextlib.contextmanager
def _no_loading_bars() -> Iterator[None]:
    """transformers draws a bar while loading weights; a cache run by the user draws its own."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device; on CUDA through pinned memory so the copy is asynchronous (DMA)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Device -> numpy; on CUDA every copy goes into pinned buffers and waits once, not per
    feature."""
    cuda = [t for t in tensors.values() if t.device.type == "cuda"]
    if not cuda:
        return {k: t.cpu().numpy() for k, t in tensors.items()}
    out = {}
    for k, t in tensors.items():
        buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        out[k] = buf
    torch.cuda.current_stream(cuda[0].device).synchronize()
    return {k: b.numpy() for k, b in out.items()}


class _OneDnnLinear(torch.nn.Module):
    """An nn.Linear run by oneDNN, optionally with the exact GELU that follows it fused in.

    On these CPUs the default fp32 path (MKL, transposed weight) reaches about 60% of the
    matmul throughput oneDNN gets, and the GEMMs are most of an encoder's time; the values are
    the same up to fp32 summation order."""

    def __init__(self, linear: torch.nn.Linear, act: str = "none") -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.act = act
        self._algorithm = "none" if act == "gelu" else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.act, [],
                                                  self._algorithm)


def _is_exact_gelu(module: object) -> bool:
    if isinstance(module, torch.nn.GELU):
        return module.approximate == "none"
    return getattr(module, "act", None) is torch.nn.functional.gelu  # transformers' GELU


def _use_onednn_linears(model: torch.nn.Module, reference: Sequence[torch.Tensor],
                        probe: Callable[[], Sequence[torch.Tensor]]) -> int:
    """Swap fp32 nn.Linear layers for oneDNN ones (BERT-style `dense` + exact GELU fused);
    kept only if the model's hidden states on a probe input stay equal to `reference`.
    Returns how many layers were swapped (0: unchanged)."""
    if not (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return 0
    undo: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    try:
        for module in list(model.modules()):
            act = getattr(module, "intermediate_act_fn", None)
            fused = type(getattr(module, "dense", None)) is torch.nn.Linear and _is_exact_gelu(act)
            for name, child in list(module.named_children()):
                if type(child) is not torch.nn.Linear or child.weight.dtype != torch.float32:
                    continue
                gelu = fused and name == "dense"
                undo.append((module, name, child))
                setattr(module, name, _OneDnnLinear(child, "gelu" if gelu else "none"))
            if fused:
                undo.append((module, "intermediate_act_fn", act))
                module.intermediate_act_fn = torch.nn.Identity()
        if undo and not same_up_to_summation_order(probe(), reference):
            raise RuntimeError("oneDNN linears changed the model's outputs")
    except Exception:  # any trouble: the stock layers are always correct
        for module, name, original in reversed(undo):
            setattr(module, name, original)
        return 0
    return sum(1 for _, name, _ in undo if name != "intermediate_act_fn")


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError("--device cuda asked for, but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise EncoderError(f"--device must be auto, cpu or cuda, not {device!r}")
    return torch.device(device)


def _compute_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """None means plain float32. `auto`: float16 on a GPU, bfloat16 on a CPU with native bf16
    matrix units (AMX-BF16, AVX512-BF16), float32 on any other CPU."""
    table = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_features.cpu_has_native_bf16() else None
    if name not in table:
        raise EncoderError(f"--compute-dtype must be auto, float32, float16 or bfloat16, not "
                           f"{name!r}")
    return table[name]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)
