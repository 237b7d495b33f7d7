"""Public Korean datasets on GitHub for bench/korean_vocab.py's corpus (`make korean-corpus` runs this), each pinned
to a commit and read in its own raw format into plain text files (a text per line) that bench/korean_corpus.py reads.

    python bench/korean_corpus_sources.py OUT_DIR [--mirror DIR]

Files come from raw.githubusercontent.com (the NER corpus, 1,400 files, from its commit's tarball), or, with
`--mirror`, from local git snapshots named OWNER+REPO/repo under DIR. Nothing here is committed to kotune.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

SOURCES = {  # name: (repo, commit, files); a path ending in / is every file under it
    "korquad": ("korquad/korquad.github.io", "61d7d6682948375dd8f06ef27e788fd19982af38",
                ["dataset/KorQuAD_v1.0_dev.json"]),
    "klue": ("KLUE-benchmark/KLUE", "3efd98708a40ff49251fddde35453f8fbb11f536",
             ["klue_benchmark/klue-dp-v1.1/klue-dp-v1.1_dev.tsv", "klue_benchmark/klue-ner-v1.1/klue-ner-v1.1_dev.tsv",
              "klue_benchmark/klue-nli-v1.1/klue-nli-v1.1_dev.json",
              "klue_benchmark/klue-sts-v1.1/klue-sts-v1.1_dev.json"]),
    "kornlu": ("kakaobrain/KorNLUDatasets", "0df0fe7d496eb61b092e022e238c2230b29f1cbc",
               ["KorNLI/xnli.dev.ko.tsv", "KorNLI/xnli.test.ko.tsv", "KorSTS/sts-train.tsv", "KorSTS/sts-dev.tsv",
                "KorSTS/sts-test.tsv"]),
    "parallel": ("jungyeul/korean-parallel-corpora", "a1fb53dc5216f3a2d07d973456d8921ed23c88c6",
                 ["korean-english-news-v1/korean-english-park.dev.tar.gz",
                  "korean-english-news-v1/korean-english-park.test.tar.gz",
                  "northkorean-english-news-v1/northkorean-english.dev.nk",
                  "northkorean-english-news-v1/northkorean-english.test.nk",
                  "korean-english-jhe/jhe-koen-dev.ko", "korean-english-jhe/jhe-koen-eval.ko",
                  "korean-french-jim-v1/korean-french-park-v1.train.ko"]),
    "ner_news": ("kmounlp/NER", "1e557de738b8e6215c7cacac116e735518c0f680", ["말뭉치 - 형태소_개체명/"]),
    "petitions": ("lovit/petitions_archive", "03dc3f3d69e03a0a4885350c6991e328fc0a6b81",
                  [f"petitions_{m}" for m in ("2017-08", "2019-04", "2019-05", "2019-06", "2019-07", "2019-08")]),
}


def fetch(repo: str, commit: str, paths: list[str], mirror: Path | None) -> dict[str, bytes]:
    """path → bytes for the listed files (a folder: all files under it)."""
    if mirror is not None:
        snapshot = mirror / repo.replace("/", "+") / "repo"
        snapshot = snapshot / ".git" if (snapshot / ".git").is_dir() else snapshot
        git = ["git", "--git-dir", str(snapshot), "-c", "core.quotepath=off"]
        names = subprocess.run(git + ["ls-tree", "-r", "--name-only", commit], check=True, capture_output=True,
                               text=True).stdout.splitlines()
        wanted = [n for n in names if any(n == p or (p.endswith("/") and n.startswith(p)) for p in paths)]
        return {n: subprocess.run(git + ["show", f"{commit}:{n}"], check=True, capture_output=True).stdout
                for n in wanted}
    if any(p.endswith("/") for p in paths):
        url = f"https://codeload.github.com/{repo}/tar.gz/{commit}"
        with tarfile.open(fileobj=io.BytesIO(urllib.request.urlopen(url, timeout=300).read())) as tar:
            out = {}
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]
                if member.isfile() and any(name.startswith(p) for p in paths):
                    out[name] = tar.extractfile(member).read()
            return out
    return {p: urllib.request.urlopen(f"https://raw.githubusercontent.com/{repo}/{commit}/"
                                      f"{urllib.parse.quote(p)}", timeout=300).read() for p in paths}


def chunked(lines: list[str], size: int) -> dict[str, list[str]]:
    """Deduplicated lines in files of `size` (the held-out split takes whole files)."""
    lines = list(dict.fromkeys(" ".join(line.split()) for line in lines if line.strip()))
    return {f"{i // size:04d}": lines[i:i + size] for i in range(0, len(lines), size)}


def texts(name: str, files: dict[str, bytes]) -> dict[str, list[str]]:
    """file stem → texts, read from each dataset's own format."""
    raw = {path: data.decode("utf-8", errors="replace") for path, data in files.items() if not path.endswith(".gz")}
    if name == "korquad":  # SQuAD JSON: an article's distinct paragraphs
        data = json.loads(next(iter(raw.values())))["data"]
        return {f"{i:04d}": list(dict.fromkeys(p["context"] for p in art["paragraphs"])) for i, art in enumerate(data)}
    if name == "klue":  # the sentence of each `## klue-...` header (dp, ner); sentence pairs (nli, sts)
        lines = []
        for path, text in raw.items():
            if path.endswith(".tsv"):
                lines += [row.split("\t", 1)[1] for row in text.splitlines() if row.startswith("## ") and "\t" in row]
            else:
                lines += [r[k] for r in json.loads(text) for k in ("premise", "hypothesis", "sentence1", "sentence2")
                          if k in r]
        return chunked(lines, 200)
    if name == "kornlu":  # TSV with a header: sentence1, sentence2 columns
        lines = []
        for text in raw.values():
            for row in csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE):
                lines += [row.get("sentence1") or "", row.get("sentence2") or ""]
        return chunked(lines, 200)
    if name == "parallel":  # the Korean side: .ko/.nk files, and the .ko file inside each news tarball
        lines = []
        for path, data in files.items():
            if path.endswith(".tar.gz"):
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    for member in tar.getmembers():
                        if member.isfile() and member.name.endswith(".ko"):
                            lines += tar.extractfile(member).read().decode("utf-8", errors="replace").splitlines()
            else:
                lines += raw[path].splitlines()
        return chunked(lines, 100)
    if name == "ner_news":  # `## N` then `## sentence` then the annotated forms: the raw sentence
        lines = []
        for text in raw.values():
            rows = text.splitlines()
            lines += [rows[i + 1][3:] for i, row in enumerate(rows[:-1])
                      if re.fullmatch(r"## \d+", row.strip()) and rows[i + 1].startswith("## ")]
        return chunked(lines, 100)
    if name == "petitions":  # JSON lines: a petition's title and content, a file each
        out = {}
        for path, text in raw.items():
            for i, line in enumerate(text.splitlines()):
                item = json.loads(line)
                body = "\n".join([item.get("title", ""), item.get("content", "")]).replace("\\n", "\n")
                out[f"{Path(path).name}-{i:05d}"] = [p for p in body.splitlines() if p.strip()]
        return out
    raise ValueError(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mirror", type=Path, help="local git snapshots (OWNER+REPO/repo) instead of GitHub")
    opts = parser.parse_args()
    for name, (repo, commit, paths) in SOURCES.items():
        folder = opts.out / name
        folder.mkdir(parents=True, exist_ok=True)
        parts = texts(name, fetch(repo, commit, paths, opts.mirror))
        for stem, lines in parts.items():
            (folder / f"{stem}.txt").write_text("\n".join(" ".join(t.split()) for t in lines) + "\n",
                                                encoding="utf-8")
        print(f"{name}: {len(parts)} files, {sum(len(''.join(v)) for v in parts.values()):,} characters "
              f"({repo}@{commit[:7]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
