"""Bad Korean data as users bring it, each through the real CLI in its own process: CP949/EUC-KR and UTF-16 files,
bad bytes and malformed lines, decomposed Hangul (NFD, as macOS writes it) in text, headers and file names, renames
that collide, eval sources that overlap training, system turns a prompt format cannot place, and the wrong format.

A mistake gets exit 2, one `kotune: error:` naming the file and the line, column, row or value and the fix, no
traceback, and nothing written. What is not a mistake (an `encoding:` set, NFD text, `strict: false` drops) shows up
in the data report, counted, with the training text as it should be. All processes start first and run together.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

from conftest import REPO, base_config, subprocess_env, write_config

KOTUNE = str(Path(sys.executable).parent / "kotune")
SFT = str(REPO / "train" / "sft.py")
QA = [("대한민국의 수도는 어디인가요?", "서울입니다."), ("일본의 수도는 어디인가요?", "도쿄입니다."),
      ("물은 몇 도에서 끓나요?", "섭씨 100도에서 끓습니다."), ("산소의 원소 기호는 무엇인가요?", "O입니다."),
      ("한글을 만든 왕은 누구인가요?", "세종대왕입니다."), ("가장 큰 행성은 무엇인가요?", "목성입니다.")]
NFD = lambda text: unicodedata.normalize("NFD", text)  # noqa: E731
FIX_STRICT = "strict: false"


def instruction_rows(n: int = 4) -> list[dict]:
    return [{"instruction": q, "output": a} for q, a in (QA * 200)[:n]]


def jsonl(rows: list) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def chat(q: str, a: str, system: str | None = None) -> dict:
    messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + messages}


class Cases:
    """Bad-input cases: name -> (argv, output dirs that must not appear, texts the one error must contain)."""

    def __init__(self, base: Path, root: Path):
        self.base, self.root, self.cases = base, root, {}

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return path

    def add(self, name: str, sources: list[dict], needles: list[str], command: str = "data", **extra) -> None:
        """A config over `sources`, run by `kotune data` (or `kotune sft|dpo`, or `python train/sft.py`)."""
        key = f"case{len(self.cases)}"
        out = self.root / f"out-{key}"
        cfg = base_config(self.base, out, max_steps=1, dataset_mixture={"seed": 1, "datasets": sources}, **extra)
        path = write_config(self.root / f"{key}.yaml", cfg)
        report_dir = self.root / f"report-{key}"
        argv = {"data": [KOTUNE, "data", str(path), "--out", str(report_dir)],
                "train/sft.py": [sys.executable, SFT, str(path)]}.get(command, [KOTUNE, command, str(path)])
        self.cases[name] = (argv, [out, report_dir], needles)


def _error_cases(base: Path, root: Path) -> dict:
    c = Cases(base, root)
    rows = instruction_rows()

    # --- encodings: detected, with the key to set --------------------------------------------------------------
    cp949_csv = c.file("엑셀.csv", csv_text(["instruction", "output"], [[q, a] for q, a in QA[:4]]).encode("cp949"))
    c.add("CP949 CSV (Korean Excel)", [{"id": str(cp949_csv), "format": "instruction"}],
          ["엑셀.csv", "CP949", "encoding: cp949"], command="train/sft.py")
    c.add("CP949 CSV under strict: false is still one error, not every row dropped",
          [{"id": str(cp949_csv), "format": "instruction"}], ["엑셀.csv", "encoding: cp949"], strict=False)
    cp949_jsonl = c.file("cp949.jsonl", jsonl(rows).encode("cp949"))
    c.add("CP949 JSONL", [{"id": str(cp949_jsonl), "format": "instruction"}], ["cp949.jsonl", "encoding: cp949"])
    euckr_tsv = c.file("nsmc/ratings_train.txt", csv_text(["id", "document", "label"], [
        ["1", "정말 재미있는 영화였다", "1"], ["2", "시간이 아까웠다", "0"]], "\t").encode("euc-kr"))
    c.add("EUC-KR raw NSMC TSV (kit19 route)", [{"id": str(euckr_tsv), "format": "kit19/nsmc"}],
          ["ratings_train.txt", "encoding: cp949"])
    utf16 = c.file("utf16le.jsonl", jsonl(rows).encode("utf-16-le"))  # no BOM: nothing says it is UTF-16
    c.add("UTF-16 JSONL without a BOM", [{"id": str(utf16), "format": "instruction"}],
          ["utf16le.jsonl", "UTF-16", "encoding: utf-16-le"])
    utf8 = c.file("utf8.jsonl", jsonl(rows))
    c.add("encoding: cp949 set on a UTF-8 file", [{"id": str(utf8), "format": "instruction", "encoding": "cp949"}],
          ["utf8.jsonl", "UTF-8", "remove encoding"])
    c.add("an encoding Python does not know", [{"id": str(utf8), "format": "instruction", "encoding": "cp-949x"}],
          ["utf8.jsonl", "'cp-949x'", "cp949"])
    parquet = root / "rows.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), parquet)
    c.add("encoding on a Parquet file", [{"id": str(parquet), "format": "instruction", "encoding": "cp949"}],
          ["rows.parquet", "Parquet", "remove encoding"])

    # --- a bad byte or a malformed line: file, line and column ------------------------------------------------
    tsv_lines = [b"id\tdocument\tlabel", "1\t재미있다\t1".encode(), "2\t지루했다\t0".encode(),
                 b"3\t" + "재미없다".encode("cp949") + b"\t0", "4\t최고의 영화\t1".encode()]
    mixed_tsv = c.file("mixed/ratings_test.txt", b"\n".join(tsv_lines) + b"\n")
    c.add("a CP949 line inside a UTF-8 TSV", [{"id": str(mixed_tsv), "format": "kit19/nsmc"}],
          ["ratings_test.txt", "line 4, column 3", "CP949", FIX_STRICT], strict=True, command="train/sft.py")
    long_rows = instruction_rows(600)
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in long_rows]
    prefix = json.dumps(long_rows[499], ensure_ascii=False).rsplit(long_rows[499]["output"], 1)[0]
    lines[499] = prefix.encode() + long_rows[499]["output"].encode("cp949") + b'"}'
    bad_row_500 = c.file("row500.jsonl", b"\n".join(lines) + b"\n")
    c.add("an invalid UTF-8 sequence in row 500 of a JSONL", [{"id": str(bad_row_500), "format": "instruction"}],
          ["row500.jsonl", f"line 500, column {len(prefix) + 1}", FIX_STRICT], strict=True)
    text = jsonl(rows).splitlines()
    text[2] = text[2][:-1]  # the closing brace lost
    broken = c.file("broken.jsonl", "\n".join(text) + "\n")
    c.add("a malformed JSONL line", [{"id": str(broken), "format": "instruction"}],
          ["broken.jsonl", "line 3, column", FIX_STRICT], strict=True)
    array = json.dumps(rows, ensure_ascii=False, indent=1).replace('"서울입니다."', '"서울입니다.",', 1)
    bad_json = c.file("array.json", array)
    c.add("a malformed JSON array (one document: no row to skip)", [{"id": str(bad_json), "format": "instruction"}],
          ["array.json", "line 5, column 2", "one object per line"])  # the brace after the stray comma
    not_object = c.file("list_line.jsonl", jsonl([rows[0], ["질문", "답변"], rows[1]]))
    c.add("a JSONL line that is not an object", [{"id": str(not_object), "format": "instruction"}],
          ["list_line.jsonl", "line 2", "not a JSON object", FIX_STRICT], strict=True)
    extra_field = c.file("extra.csv", csv_text(["instruction", "output"], [[q, a] for q, a in QA[:2]])
                         + "세 번째 질문,답변,남는 칸\n")
    c.add("a CSV line with more fields than the header", [{"id": str(extra_field), "format": "instruction"}],
          ["extra.csv", "line 4", "3 fields", "header has 2", "quote values", FIX_STRICT], strict=True)
    petitions = c.file("petitions/petitions_2017-09", "\n".join([
        json.dumps({"title": "청원 제목", "content": "청원 내용입니다."}, ensure_ascii=False),
        json.dumps({"title": "두 번째", "content": "내용"}, ensure_ascii=False),
        '{"title": "세 번째", "content": "닫히지 않은 문자열}']) + "\n")
    c.add("a malformed line in a raw kit19 JSON-lines file", [{"id": str(petitions), "format": "kit19/petitions"}],
          ["petitions_2017-09", "line 3, column", FIX_STRICT], strict=True)
    prefs = [{"prompt": q, "chosen": a, "rejected": "몰라."} for q, a in QA[:3]]
    pref_lines = jsonl(prefs).splitlines()
    pref_lines[1] = pref_lines[1].replace('"chosen":', '"chosen"', 1)
    pref = c.file("pref.jsonl", "\n".join(pref_lines) + "\n")
    c.add("a malformed preference line (DPO)", [{"id": str(pref), "format": "preference"}],
          ["pref.jsonl", "line 2, column", FIX_STRICT], command="dpo", strict=True)

    # --- renames and headers ---------------------------------------------------------------------------------
    both = c.file("both.jsonl", jsonl([{"instruction": q, "output": "옛 답", "answer": a} for q, a in QA[:3]]))
    c.add("a rename onto a column the file already has", [{"id": str(both), "format": "instruction",
                                                          "columns": {"output": "answer"}}],
          ["both.jsonl", "'answer'", "'output'", "already has", "rename the file's own too"])
    qa_file = c.file("질문.jsonl", jsonl([{"질문": q, "답변": a} for q, a in QA[:3]]))
    c.add("two kotune names mapped to one column", [{"id": str(qa_file), "format": "instruction",
                                                    "columns": {"instruction": "질문", "input": "질문",
                                                                "output": "답변"}}],
          ["질문.jsonl", "'질문'", "instruction", "input", "its own column"])
    nfd_header = c.file("nfd_header.jsonl", jsonl([{NFD("질문"): q, NFD("답변"): a} for q, a in QA[:3]]))
    c.add("a column that is really missing is named in NFC", [{"id": str(nfd_header), "format": "instruction",
                                                              "columns": {"instruction": "질문", "output": "정답"}}],
          ["nfd_header.jsonl", "'정답'", "the file has ['질문', '답변']"])

    # --- the wrong format, bad roles --------------------------------------------------------------------------
    messages = c.file("openai.jsonl", jsonl([chat(q, a) for q, a in QA[:3]]))
    c.add("format: sharegpt on OpenAI messages", [{"id": str(messages), "format": "sharegpt"}],
          ["openai.jsonl", "use format: chat"])
    c.add("format: instruction on OpenAI messages", [{"id": str(messages), "format": "instruction"}],
          ["openai.jsonl", "use format: chat"])
    share = c.file("sharegpt.jsonl", jsonl([{"conversations": [{"from": "human", "value": q},
                                                               {"from": "gpt", "value": a}]} for q, a in QA[:3]]))
    c.add("format: chat on ShareGPT conversations", [{"id": str(share), "format": "chat"}],
          ["sharegpt.jsonl", "use format: sharegpt"])
    bad_role = c.file("roles.jsonl", jsonl([chat(*QA[0]), {"messages": [{"role": "user", "content": QA[1][0]},
                                                                        {"role": "bot", "content": QA[1][1]}]}]))
    c.add("a chat role that is not valid", [{"id": str(bad_role), "format": "chat"}],
          ["roles.jsonl", "row 2", "'bot'", "system, user, assistant", "fix the row"], strict=True)
    bad_from = c.file("from.jsonl", jsonl([{"conversations": [{"from": "human", "value": QA[0][0]},
                                                              {"from": "robot", "value": QA[0][1]}]}]))
    c.add("a ShareGPT role that is not valid", [{"id": str(bad_from), "format": "sharegpt"}],
          ["from.jsonl", "row 1", "'robot'", "human", "gpt", "fix the row"], strict=True)
    system_mid = c.file("system_mid.jsonl", jsonl([
        {"messages": [{"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": QA[0][1]},
                      {"role": "system", "content": "이제부터 반말로 대답해."},
                      {"role": "user", "content": QA[1][0]}, {"role": "assistant", "content": "도쿄야."}]}]))
    c.add("llama2 cannot place a system turn in mid-conversation", [{"id": str(system_mid), "format": "chat"}],
          ["system_mid.jsonl", "row 1", "llama2", "move the system message to the start"], command="sft", strict=True, prompt_format="llama2")

    # --- eval sources that are the training data --------------------------------------------------------------
    c.add("eval: true on the training file", [{"id": str(utf8), "format": "instruction"},
                                              {"id": str(utf8), "format": "instruction", "eval": True}],
          ["utf8.jsonl", "eval", "eval_split_size"])
    (root / "sub").mkdir(exist_ok=True)
    c.add("eval: true on the training file, spelled another way",
          [{"id": str(utf8), "format": "instruction"},
           {"id": str(root / "sub" / ".." / "utf8.jsonl"), "format": "instruction", "eval": True}],
          ["utf8.jsonl", "eval", "eval_split_size"])
    return c.cases


def test_bad_data_gets_one_message_naming_where_and_the_fix_and_writes_nothing(tiny_bases, tmp_path):
    cases = _error_cases(tiny_bases["gpt_neox"], tmp_path)
    assert len(cases) >= 25
    procs = {name: subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=tmp_path)
             for name, (argv, _, _) in cases.items()}
    failures = []
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        _, outputs, needles = cases[name]
        problems = []
        if proc.returncode != 2:
            problems.append(f"exit {proc.returncode}")
        if "Traceback" in err or err.count("kotune: error:") != 1:
            problems.append("not one clean error")
        problems += [f"no {n!r}" for n in needles if n not in err]
        problems += [f"{p.name} written" for p in outputs if p.exists()]
        if problems:
            tail = err[err.find("kotune: error:"):] if "kotune: error:" in err else err[-1500:]
            failures.append(f"{name}: {', '.join(problems)}\n    {tail.strip()}")
    assert not failures, "\n".join(failures)


# --- what is not an error: read right, normalized, dropped and counted ---------------------------------------

MOVED = "이제부터 반말로 대답해."


def _good_mixture(root: Path) -> tuple[list[dict], list[list[dict]]]:
    """Sources whose shares take each of their rows once (3 rows each; 4 where one is dropped while encoding), and
    the conversations the run must train on, in NFC."""
    def write(name, data: str | bytes) -> Path:
        path = root / name
        (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
        return path

    expect = []
    nfd_rows = [{"instruction": NFD(q), "output": NFD(a)} for q, a in QA[:3]]
    expect += [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA[:3]]
    nfd = write("nfd.jsonl", jsonl(nfd_rows))
    # an NFD file name and NFD headers (macOS), named in NFC in the config
    write(NFD("질문답변.json"), json.dumps([{NFD("질문"): q, NFD("답변"): a} for q, a in QA[3:6]],
                                            ensure_ascii=True))
    expect += [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA[3:6]]
    cp949 = write("excel.csv", csv_text(["instruction", "input", "output"],
                                        [[q, "", a] for q, a in QA[1:4]]).encode("cp949"))
    expect += [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA[1:4]]
    utf16 = write("windows.jsonl", jsonl([chat(q, a, "친절하게 대답해.") for q, a in QA[2:5]]).encode("utf-16"))
    expect += [chat(q, a, "친절하게 대답해.")["messages"] for q, a in QA[2:5]]
    dirty_lines = [json.dumps({"instruction": q, "output": a}, ensure_ascii=False).encode() for q, a in QA[:5]]
    dirty_lines[1] = dirty_lines[1].replace("도쿄".encode(), "도쿄".encode("cp949"))  # a bad byte
    dirty_lines[3] = dirty_lines[3][:-1]  # a malformed line
    dirty = write("dirty.jsonl", b"\n".join(dirty_lines) + b"\n")
    expect += [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in (QA[0], QA[2], QA[4])]
    moved = [{"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": QA[0][1]},
             {"role": "system", "content": MOVED}, {"role": "user", "content": QA[1][0]},
             {"role": "assistant", "content": "도쿄야."}]
    system_rows = [chat(q, a, "짧게 대답해.") for q, a in QA[3:6]] + [{"messages": moved}]
    system = write("system.jsonl", jsonl(system_rows))
    expect += [r["messages"] for r in system_rows[:3]]
    evals = write("valid.jsonl", jsonl([{"instruction": q, "output": a} for q, a in QA[:2]]  # NFC twins of nfd.jsonl
                                       + [{"instruction": "바다는 왜 파란가요?", "output": "빛의 산란 때문입니다."}]))
    sources = [{"id": str(nfd), "format": "instruction"},
               {"id": str(root / "질문답변.json"), "format": "instruction",
                "columns": {"instruction": "질문", "output": "답변"}},
               {"id": str(cp949), "format": "instruction", "encoding": "cp949"},
               {"id": str(utf16), "format": "chat"},
               {"id": str(dirty), "format": "instruction"},
               {"id": str(system), "format": "chat"},  # 4 rows, one dropped: 3 used, each once
               {"id": str(evals), "format": "instruction", "eval": True}]
    return sources, expect


def test_encodings_nfc_and_drops_are_read_right_and_counted(tiny_bases, tmp_path):
    from kotune.data.encode import encode_conversations
    from kotune.data.prompt_formats import install_template
    from kotune.models.loading import load_tokenizer

    sources, expect = _good_mixture(tmp_path)
    out = tmp_path / "report"
    cfg = base_config(tiny_bases["llama"], tmp_path / "run", prompt_format="llama2",
                      dataset_mixture={"seed": 3, "datasets": sources}, max_length=256)
    path = write_config(tmp_path / "good.yaml", cfg)
    proc = subprocess.run([KOTUNE, "data", str(path), "--out", str(out)], env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "data_report.json").read_text())
    per = report["per_source"]
    ids = [s["id"] for s in sources]
    assert [per[i]["used"] for i in ids[:6]] == [3] * 6
    assert per[ids[0]]["nfc_normalized"] == 3 and per[ids[1]]["nfc_normalized"] == 3  # text; headers
    assert per[ids[2]]["nfc_normalized"] == 0 and per[ids[3]]["nfc_normalized"] == 0
    assert per[ids[4]]["dropped"] == {"bytes that are not UTF-8": 1, "malformed JSON line": 1}
    assert per[ids[4]]["available"] == 5
    assert per[ids[5]]["dropped"] == {"a system message the prompt format (llama2) cannot place there": 1}
    assert per[ids[6]]["eval"]["used"] == 1 and per[ids[6]]["eval"]["dropped"] == {"also in the training data": 2}
    assert "read as UTF-16 (BOM)" in proc.stderr and "2 eval rows are also in the training data" in proc.stderr
    # the training text is the NFC text, decoded right: the token totals of exactly the expected conversations
    tok = load_tokenizer(str(tiny_bases["llama"]))
    install_template(tok, "llama2")
    encoded = encode_conversations(tok, expect)
    assert report["examples"] == len(expect) == 18
    assert report["tokens"]["total"] == sum(len(i) for i, _ in encoded)
    assert report["tokens"]["answer"] == sum(sum(1 for t in lab if t != -100) for _, lab in encoded)
