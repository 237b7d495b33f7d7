# kotune on a CUDA GPU machine: the pinned stack on the official PyTorch CUDA image, launch.sh as the entrypoint.
#   docker build -t kotune .
#   docker run --gpus all --ipc=host -v "$PWD/data:/opt/kotune/data" -v "$PWD/runs:/opt/kotune/runs" \
#     kotune sft configs/sft/polyglot-ko-5.8b-qlora.yaml --gpus 4 --zero 3
# The image's torch must equal the pinned torch (constraints.txt); tests/test_dockerfile.py checks it.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-devel
FROM ${BASE_IMAGE}

# hadolint ignore=DL3064
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    TORCH_EXTENSIONS_DIR=/opt/torch_extensions

WORKDIR /opt/kotune
COPY pyproject.toml constraints.txt README.md ./
COPY src/ src/

# DeepSpeed's CPU Adam (for ZeRO offload) and fused Adam compiled at build time, not at the first run.
RUN DS_BUILD_CPU_ADAM=1 DS_BUILD_FUSED_ADAM=1 pip install --no-build-isolation -c constraints.txt deepspeed==0.19.8 \
    && pip install -c constraints.txt -e . \
    && python -c "import kotune, trl, peft, bitsandbytes, deepspeed"

COPY train/ train/
COPY configs/ configs/
COPY deepspeed/ deepspeed/
COPY launch.sh ./

ENTRYPOINT ["/opt/kotune/launch.sh"]
CMD ["--help"]
