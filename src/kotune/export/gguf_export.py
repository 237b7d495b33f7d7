"""`kotune export RUN --gguf [--quant f16|q8_0|q4_k_m]`: a run as one GGUF file for llama.cpp and Ollama.

An adapter run is merged first (as `kotune merge` does); a full-model run is converted as it is. llama.cpp's own
converter writes the file, with the run's tokenizer and chat template inside, from the llama-cpp-python source
distribution on PyPI (llama_cpp_source.py). k-quants (q4_k_m ...) are made by llama.cpp's quantizer through
llama-cpp-python. Next to the file: an Ollama `Modelfile` (template and stop tokens), export_info.json, and, when
llama-cpp-python is installed, the answer llama.cpp gave to a Korean prompt as a load check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kotune.atomic_dir import check_out, staged_dir
from kotune.errors import KotuneError

logger = logging.getLogger("kotune.export")

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")  # written by the converter itself
LLAMA_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
                "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}
CHECK_PROMPT = "한국의 수도는 어디인가요?"
INFO_FILE = "export_info.json"  # written into every export: --overwrite replaces only folders holding it


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kotune export", description=__doc__.split("\n\n")[1])
    parser.add_argument("run_dir", help="a kotune output dir (LoRA adapter or full model) or a `kotune merge` dir")
    parser.add_argument("--gguf", action="store_true", required=True, help="write a GGUF (the only target so far)")
    parser.add_argument("--quant", default="f16", choices=[*CONVERTER_TYPES, *LLAMA_QUANTS],
                        help="weight type (default f16); k-quants need llama-cpp-python (`pip install -e .[gguf]`)")
    parser.add_argument("--out", help="output folder (default: RUN_DIR-gguf next to the run)")
    parser.add_argument("--pre-tokenizer", help="llama.cpp's name for a BPE pre-tokenizer it does not recognise")
    parser.add_argument("--keep-merged", action="store_true", help="keep the merged HF model in OUT/merged")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out that an earlier `kotune export` wrote (it holds export_info.json)")
    return parser.parse_args(argv)


def export_gguf(run_dir: str | Path, quant: str = "f16", out: str | Path | None = None,
                pre_tokenizer: str | None = None, keep_merged: bool = False, overwrite: bool = False) -> Path:
    """Write OUT/model-QUANT.gguf, OUT/Modelfile and OUT/export_info.json; returns the GGUF's path."""
    from kotune.inference.merge import input_dirs, merge

    run = Path(run_dir)
    out = Path(out) if out else run.with_name(f"{run.name}-gguf")
    if run.is_dir():  # before anything heavy loads: an --out that would destroy an input or someone's files
        check_out(out, input_dirs(run), overwrite, INFO_FILE, "kotune export")
    from kotune.export.gguf_support import check_convertible
    from kotune.export.llama_cpp_source import converter_dir, installed_version
    from kotune.export.modelfile import modelfile
    from kotune.inference.loading import adapter_chain, load_run_tokenizer, run_kind
    from kotune.records import package_versions, write_json

    kind = run_kind(run)
    if quant in LLAMA_QUANTS and installed_version() is None:
        raise KotuneError(f"--quant {quant} is made by llama.cpp's quantizer: `pip install -e .[gguf]` "
                          "(builds llama-cpp-python, several minutes), or use --quant f16/q8_0")
    converter = converter_dir()
    # an architecture the converter lacks stops here, before the merge and before OUT exists
    check_convertible(adapter_chain(run)[0] if kind == "adapter" else run, converter)
    tokenizer = load_run_tokenizer(run)
    with staged_dir(out) as tmp:
        model_dir = merge(run, tmp / "merged") if kind == "adapter" else run
        written = quant if quant in CONVERTER_TYPES else "f16"
        path = tmp / f"model-{written}.gguf"
        meta = convert(model_dir, path, written, pre_tokenizer, converter)
        gaps = known_gaps(model_dir)
        if quant in LLAMA_QUANTS:
            path = quantize(path, tmp / f"model-{quant}.gguf", quant)
        (tmp / "Modelfile").write_text(modelfile(path.name, tokenizer, meta["add_bos_token"]), encoding="utf-8")
        check = llama_cpp_answer(path) if installed_version() else None
        if kind == "adapter" and not keep_merged:
            shutil.rmtree(tmp / "merged")
        write_card(tmp, run, path.name, quant)
        write_json(tmp / INFO_FILE, {
            "source": str(run.resolve()), "source_kind": kind, "file": path.name, "quant": quant,
            "size_bytes": path.stat().st_size, "gguf": {k: v for k, v in meta.items() if k != "chat_template"},
            "chat_template_embedded": bool(meta["chat_template"]), "converter": str(converter),
            "llama_cpp_check": check, "known_differences": gaps, "versions": {**package_versions(), "llama_cpp_python": installed_version()}})
    logger.info("GGUF written: %s", out / path.name)
    return out / path.name


def known_gaps(model_dir: Path) -> list[str]:
    """Where this llama.cpp is known to compute the model differently from transformers (measured in the tests)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config = config.get("text_config") or config  # an image-text model (EXAONE 4.5) is converted as its text model
    gaps = []
    types = set(config.get("layer_types") or [])
    if config.get("model_type") == "exaone4" and {"sliding_attention", "full_attention"} <= types:
        gaps.append("EXAONE 4.0 hybrid attention: llama.cpp's global (no-RoPE) layers differ from transformers'; "
                    "logits differ from the 2nd token on (up to ~1.2 on a random tiny model), greedy answers of "
                    "trained tiny models still matched. Compare answers before serving.")
    if config.get("model_type") == "deepseek_v3":
        gaps.append("DeepSeek-V3 MLA (Kanana-2): llama.cpp's logits differ from transformers' by up to ~0.7 on a random "
                    "tiny model (cause not yet found); greedy answers of trained tiny models matched. Compare answers "
                    "before serving.")
    for gap in gaps:
        logger.warning("GGUF: %s", gap)
    return gaps


def convert(model_dir: Path, path: Path, outtype: str, pre_tokenizer: str | None, converter: Path) -> dict:
    """llama.cpp's convert_hf_to_gguf.py in a subprocess (its gguf-py must not shadow anything here)."""
    summary = path.with_suffix(".summary.json")
    cmd = [sys.executable, "-m", "kotune.export.convert_shim", str(converter), pre_tokenizer or "-", str(summary),
           str(model_dir), "--outfile", str(path), "--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_LOCAL_GGUF": "1"})
    if done.returncode != 0 or not summary.is_file():
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise KotuneError(f"llama.cpp's converter failed on '{model_dir}': {lines[-1] if lines else 'no output'}")
    meta = json.loads(summary.read_text(encoding="utf-8"))
    summary.unlink()
    if not meta["chat_template"]:
        raise KotuneError(f"the GGUF written from '{model_dir}' has no chat template; the run's tokenizer must "
                          "carry one (kotune's runs always do)")
    return meta


def quantize(source: Path, target: Path, quant: str) -> Path:
    """llama.cpp's own quantizer (llama_model_quantize), then the f16 intermediate is removed."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_QUANTS[quant])
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) != 0:
        raise KotuneError(f"llama.cpp could not quantize '{source}' to {quant}")
    source.unlink()
    return target


def llama_cpp_answer(path: Path, max_tokens: int = 24) -> dict:
    """Load the file in llama.cpp and answer a Korean prompt greedily through the GGUF's own chat template."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, verbose=False, seed=0)
    reply = llm.create_chat_completion([{"role": "user", "content": CHECK_PROMPT}], max_tokens=max_tokens,
                                       temperature=0.0, top_k=1)
    return {"prompt": CHECK_PROMPT, "answer": reply["choices"][0]["message"]["content"],
            "finish_reason": reply["choices"][0]["finish_reason"]}


def write_card(out: Path, run: Path, file: str, quant: str) -> None:
    """README.md: the source run's model card, tagged gguf, with how llama.cpp and Ollama load this file."""
    from kotune.model_card import build_card

    try:
        card = build_card(run)
    except Exception as err:  # noqa: BLE001 - documentation: the GGUF is fine whatever happens here
        logger.warning("model card not written: %s: %s", type(err).__name__, err)
        return
    card.data.tags = [*(card.data.tags or []), "gguf", "llama.cpp", "ollama"]
    card.text += (f"\n\n## GGUF ({quant})\n\n`{file}`은 llama.cpp의 변환기로 만든 파일이며, 토크나이저와 채팅 템플릿이 "
                  f"들어 있습니다.\n\n```bash\nllama-cli -m {file} -cnv\nollama create my-model -f Modelfile && "
                  f"ollama run my-model\n```\n\n```python\nfrom llama_cpp import Llama\nllm = Llama(model_path=\"{file}\")\n"
                  "llm.create_chat_completion([{\"role\": \"user\", \"content\": \"안녕하세요\"}])\n```\n")
    (out / "README.md").write_text(str(card), encoding="utf-8")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from kotune.logs import setup_logging

    setup_logging()
    path = export_gguf(args.run_dir, args.quant, args.out, args.pre_tokenizer, args.keep_merged, args.overwrite)
    print(f"GGUF: {path}\nOllama: cd {path.parent} && ollama create NAME -f Modelfile")
    return 0
