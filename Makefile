# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned stack (torch 2.13.0 first, so pip never pulls a CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
# One DeepSpeed op cache per user, not per run: its JIT builds take minutes.
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/kotune/torch_extensions

# Real tokenizers for the tests, offline: llama.cpp's source distribution on PyPI carries vocab-only GGUF files
# (Llama-3's and Qwen2's among them), read by transformers' own GGUF reader. Fetched once per user (76 MB sdist).
LLAMA_CPP_SDIST := llama-cpp-python==0.3.36
export KOTUNE_GGUF_VOCAB ?= $(HOME)/.cache/kotune/gguf_vocab

.PHONY: install install-gguf install-ray vocab converter korean-corpus slurm browser demo test test-slow test-avx2 clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q pip==26.0.1
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# .extracted-2: the reasoning bases' vocabularies (Qwen3.5, Gemma 4) and llama.cpp's real chat templates
# (models/templates/*.jinja, into $(KOTUNE_GGUF_VOCAB)/templates) too; a cache from before re-extracts.
$(KOTUNE_GGUF_VOCAB)/.extracted-2: | $(VENV)/.installed
	mkdir -p $(KOTUNE_GGUF_VOCAB)/sdist $(KOTUNE_GGUF_VOCAB)/templates
	$(PY) -m pip download -q --no-deps --no-binary :all: $(LLAMA_CPP_SDIST) -d $(KOTUNE_GGUF_VOCAB)/sdist
	tar -xzf $(KOTUNE_GGUF_VOCAB)/sdist/llama_cpp_python-*.tar.gz -C $(KOTUNE_GGUF_VOCAB) --wildcards \
		'*/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf' '*/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf' \
		'*/vendor/llama.cpp/models/ggml-vocab-qwen35.gguf' '*/vendor/llama.cpp/models/ggml-vocab-gemma-4.gguf' \
		--transform='s#.*/##'
	tar -xzf $(KOTUNE_GGUF_VOCAB)/sdist/llama_cpp_python-*.tar.gz -C $(KOTUNE_GGUF_VOCAB)/templates --wildcards \
		'*/vendor/llama.cpp/models/templates/*.jinja' --transform='s#.*/##'
	rm -rf $(KOTUNE_GGUF_VOCAB)/sdist
	touch $@

vocab: $(KOTUNE_GGUF_VOCAB)/.extracted-2

# Real Korean text for `bench/korean_vocab.py --corpus`, fetched, never committed: KoNLPy's bundled corpora (the
# Constitution, 10 National Assembly bills; PyPI wheel), the Korean HTML documentation of three Debian packages
# (apt-get download needs `apt-get update` once; nothing is installed), and public Korean datasets from GitHub pinned
# to commits (bench/korean_corpus_sources.py: KorQuAD, KLUE, KorNLU, news, petitions; KOREAN_MIRROR=DIR reads local
# git snapshots instead).
KOREAN_CORPUS ?= $(HOME)/.cache/kotune/korean_corpus
$(KOREAN_CORPUS)/.fetched: | $(VENV)/.installed
	rm -rf $(KOREAN_CORPUS) && mkdir -p $(KOREAN_CORPUS)/dl
	$(PY) -m pip download -q --no-deps konlpy==0.6.0 -d $(KOREAN_CORPUS)/dl
	$(PY) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
		z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith('konlpy/data/corpus/')])" \
		$(KOREAN_CORPUS)/dl/konlpy-0.6.0-py2.py3-none-any.whl $(KOREAN_CORPUS)
	cd $(KOREAN_CORPUS)/dl && apt-get download -q libreoffice-help-ko gimp-help-ko debian-faq-ko
	for deb in $(KOREAN_CORPUS)/dl/*.deb; do dpkg-deb -x $$deb $(KOREAN_CORPUS)/debian; done
	find $(KOREAN_CORPUS)/debian -type f ! -name '*.html' -delete
	rm -rf $(KOREAN_CORPUS)/dl
	$(PY) bench/korean_corpus_sources.py $(KOREAN_CORPUS)/github $(if $(KOREAN_MIRROR),--mirror $(KOREAN_MIRROR))
	touch $@

korean-corpus: $(KOREAN_CORPUS)/.fetched

# llama.cpp's GGUF converter, from the same sdist (kotune.export.llama_cpp_source keeps 2 MB of it per version).
converter: | $(VENV)/.installed
	$(PY) -c "from kotune.export.llama_cpp_source import converter_dir; print('llama.cpp converter:', converter_dir())"

# llama.cpp itself (llama-cpp-python, built from source: several minutes on 2 cores), for q4_k_m and the slow
# tests that load GGUF files.
install-gguf: $(VENV)/.gguf-installed
$(VENV)/.gguf-installed: $(VENV)/.installed
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -q -c constraints.txt -e '.[gguf]'
	touch $@

# Ray Train (the kotune[ray] extra) for the slow tests of `kotune ray`; `make test` does not install it.
install-ray: $(VENV)/.ray-installed
$(VENV)/.ray-installed: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[ray]'
	touch $@

demo: install
	$(VENV)/bin/kotune demo

test: install vocab converter
	$(PY) -m pytest -q

# A real one-machine SLURM (slurmctld + slurmd) for the slow tests of `kotune slurm`: Debian's slurm-wlm, as root.
slurm:
	command -v slurmctld >/dev/null || test -x /usr/sbin/slurmctld || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm)

# Debian's Chromium and its driver, for kotune studio's browser test (selenium drives them; nothing is downloaded at test
# time); the CJK fonts make the Korean page legible in its screenshots. Needs root (apt).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver fonts-noto-cjk)

test-slow: install install-gguf install-ray vocab converter slurm browser
	$(PY) -m pytest -q -m slow

# The tolerance tests (golden losses, every preference experiment, slow ones included) as on a CPU without AVX512:
# oneDNN capped at AVX2 emulates bf16 and rounds fp32 differently. CI machines differ; both must pass.
AVX2_CAP := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
test-avx2: install vocab converter
	$(AVX2_CAP) $(PY) -m pytest -q -m 'not gpu' tests/test_golden.py tests/test_dpo.py tests/test_preference_stages.py

clean:
	rm -rf runs
