"""The page's text in Korean and English: one table, chosen by the browser's Accept-Language or the page's switch.

The Korean is written for Korean practitioners as they talk about fine-tuning (학습, 어댑터, 손실), not translated word
by word; config keys, commands and file names stay as the CLI spells them.
"""

from __future__ import annotations

LANGS = ("ko", "en")

STRINGS = {
    "en": {
        "title": "kotune studio", "folder": "Folder", "lang": "한국어",
        "tab_config": "1. Config", "tab_learn": "2. What the model learns", "tab_fit": "3. Will it fit",
        "tab_run": "4. Train and watch", "tab_chat": "5. Chat and export",
        "stage": "Stage", "base": "Base model (a local folder or a Hub id)", "method": "Method",
        "method_qlora": "QLoRA (4-bit base + LoRA)", "method_lora": "LoRA", "method_full": "Full fine-tuning",
        "data": "Training data", "add_source": "+ Add a source", "source_id": "File or Hub id",
        "source_format": "Format", "source_extra": "More keys (JSON)", "remove": "Remove",
        "sec_model": "Model", "sec_method": "Method settings", "sec_training": "Training",
        "advanced": "Every other setting", "advanced_hint": "Any key the stage accepts; the value is read as YAML "
        "(true, 3, 1e-4, [a, b], text).", "add": "Add", "key": "key", "value": "value",
        "unset": "(not set)", "yes": "true", "no": "false",
        "check_ok": "The config is valid: the CLI would start this run.",
        "check_bad": "The CLI would refuse this config:", "studio_refused": "The studio refuses these paths:",
        "yaml": "The YAML it will run", "commands": "The same run from a terminal",
        "config_path": "Config file", "load": "Load", "save": "Save", "saved": "Saved",
        "learn_intro": "The first rows of the mixture, rendered through the base's chat template and tokenized as "
        "training tokenizes them.",
        "learn_btn": "Show what the model learns", "rows": "Rows",
        "legend_loss": "trained on (carries loss)", "legend_noloss": "context only (no loss)",
        "legend_eot": "end of turn: the model learns to stop here", "tokens_per_syllable": "Tokens per Hangul syllable",
        "dropped": "Dropped rows and why", "answers": "Answer counts per source", "none": "none",
        "report": "What `kotune data` prints", "template": "The chat template the run trains with", "example": "Example", "tokens": "tokens", "trained": "trained",
        "fit_intro": "Memory per GPU, estimated from the model's config alone (no weights are loaded).",
        "gpus": "GPUs", "gpu_mem": "Memory per GPU", "fit_btn": "Estimate", "fit_table": "The estimate, term by term",
        "run_intro": "Saves the config above and runs it as `kotune STAGE CONFIG` would.",
        "start": "Start training", "stop": "Stop (keeps a checkpoint)", "status": "Status",
        "status_running": "training", "status_finished": "finished", "status_failed": "stopped with an error",
        "status_stopped": "stopped; a checkpoint was saved", "status_lost": "the studio that started it has ended",
        "progress": "Progress", "eta": "time left", "step": "step", "loss_chart": "Loss",
        "train_loss": "train loss", "eval_loss": "eval loss", "health_chart": "Answer health (eval answers)",
        "hangul_share": "Hangul share", "log": "Log", "jobs": "Started here", "past": "Runs in this folder",
        "output_dir": "Output folder", "metrics": "Last metrics", "open": "Open", "no_runs": "No runs yet.",
        "chat_intro": "The base and the tuned model answer the same question through the run's chat template.",
        "run_dir": "Run folder", "thinking": "Thinking", "question": "Question", "send": "Ask both",
        "base_side": "Base", "tuned_side": "Tuned", "merge": "Merge the adapter into its base",
        "export": "Export for llama.cpp (GGUF)", "out": "Output folder", "quant": "Weight type",
        "working": "Working…", "error": "Error",
    },
    "ko": {
        "title": "kotune studio", "folder": "작업 폴더", "lang": "English",
        "tab_config": "1. 설정", "tab_learn": "2. 모델이 배울 내용", "tab_fit": "3. 메모리 계산",
        "tab_run": "4. 학습 실행", "tab_chat": "5. 대화와 내보내기",
        "stage": "학습 단계", "base": "베이스 모델 (로컬 폴더나 허브 ID)", "method": "학습 방식",
        "method_qlora": "QLoRA (4비트 베이스 + LoRA)", "method_lora": "LoRA", "method_full": "전체 파인튜닝",
        "data": "학습 데이터", "add_source": "+ 데이터 추가", "source_id": "파일 경로나 허브 ID",
        "source_format": "형식", "source_extra": "추가 설정 (JSON)", "remove": "삭제",
        "sec_model": "모델", "sec_method": "학습 방식 세부 설정", "sec_training": "학습",
        "advanced": "그 밖의 모든 설정", "advanced_hint": "이 단계가 받는 설정이면 무엇이든 넣을 수 있습니다. 값은 "
        "YAML로 읽습니다 (true, 3, 1e-4, [a, b], 글자).", "add": "추가", "key": "설정 이름", "value": "값",
        "unset": "(기본값)", "yes": "true", "no": "false",
        "check_ok": "설정에 문제가 없습니다. CLI로도 그대로 실행됩니다.",
        "check_bad": "CLI라면 이 설정을 이렇게 거부합니다:", "studio_refused": "스튜디오 밖의 경로라 쓸 수 없습니다:",
        "yaml": "실행될 YAML", "commands": "터미널에서 똑같이 실행하려면",
        "config_path": "설정 파일", "load": "불러오기", "save": "저장", "saved": "저장했습니다",
        "learn_intro": "데이터 앞부분 몇 개를 베이스 모델의 채팅 템플릿으로 그리고, 학습할 때와 똑같이 토큰으로 "
        "나눠 보여 줍니다.",
        "learn_btn": "모델이 배울 내용 보기", "rows": "보여 줄 개수",
        "legend_loss": "학습하는 토큰 (손실 계산)", "legend_noloss": "문맥으로만 보는 토큰 (손실 없음)",
        "legend_eot": "턴 종료 토큰: 여기서 멈추는 법을 배웁니다", "tokens_per_syllable": "한글 한 음절당 토큰 수",
        "dropped": "빠진 데이터와 이유", "answers": "데이터별 정답 분포", "none": "없음",
        "report": "`kotune data` 출력", "template": "학습에 쓰는 채팅 템플릿", "example": "예시", "tokens": "토큰", "trained": "학습",
        "fit_intro": "가중치를 내려받지 않고 모델 설정만으로 GPU 한 장에 필요한 메모리를 어림합니다.",
        "gpus": "GPU 수", "gpu_mem": "GPU 한 장의 메모리", "fit_btn": "계산하기", "fit_table": "항목별 어림값",
        "run_intro": "위 설정을 저장한 뒤 `kotune STAGE CONFIG`와 똑같이 실행합니다.",
        "start": "학습 시작", "stop": "멈추기 (체크포인트 저장)", "status": "상태",
        "status_running": "학습 중", "status_finished": "끝났습니다", "status_failed": "오류로 멈췄습니다",
        "status_stopped": "멈췄습니다. 체크포인트를 저장했습니다",
        "status_lost": "이 학습을 시작한 스튜디오가 종료되었습니다",
        "progress": "진행", "eta": "남은 시간", "step": "스텝", "loss_chart": "손실",
        "train_loss": "학습 손실", "eval_loss": "검증 손실", "health_chart": "답변 상태 (검증 답변 기준)",
        "hangul_share": "한글 비율", "log": "로그", "jobs": "여기서 시작한 작업", "past": "이 폴더의 학습 결과",
        "output_dir": "출력 폴더", "metrics": "마지막 지표", "open": "열기", "no_runs": "아직 학습 결과가 없습니다.",
        "chat_intro": "베이스 모델과 학습한 모델이 같은 질문에 답합니다. 둘 다 이 학습의 채팅 템플릿을 씁니다.",
        "run_dir": "학습 결과 폴더", "thinking": "추론 모드", "question": "질문", "send": "둘 다에게 묻기",
        "base_side": "베이스", "tuned_side": "학습 후", "merge": "어댑터를 베이스에 합치기",
        "export": "llama.cpp용으로 내보내기 (GGUF)", "out": "출력 폴더", "quant": "가중치 형식",
        "working": "처리 중…", "error": "오류",
    },
}


def pick(accept_language: str) -> str:
    """The first of LANGS the browser asks for (Accept-Language, by q), English otherwise."""
    ranked = []
    for i, part in enumerate(accept_language.split(",")):
        lang, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, i, lang.split("-")[0].lower()))
    for _, _, lang in sorted(ranked):
        if lang in LANGS:
            return lang
    return "en"
