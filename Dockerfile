# kotune on a CUDA GPU machine: the pinned stack on the official PyTorch CUDA image, launch.sh as the entrypoint.
#   docker build -t kotune .
#   docker run --gpus all --ipc=host -v "$PWD/data:/opt/kotune/data" -v "$PWD/runs:/opt/kotune/runs" \
#     kotune sft configs/sft/polyglot-ko-5.8b-qlora.yaml --gpus 4 --zero 3
# The image's torch must equal the pinned torch (constraints.txt); tests/test_dockerfile.py checks it.
# torch 2.13 is built for CUDA 12.6 and 13.0 (13.2 experimental); there is no 2.13 CUDA 12.8 image.
#   cuda12.6 (default): Volta to Hopper (V100, A100, H100, RTX 30/40), drivers >= 525 with CUDA minor-version compat.
#   Blackwell (B200, RTX 50) needs cuda13.0 and a driver >= 580; nvcc 13 dropped Volta, so set the arch list too:
#     docker build --build-arg BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-devel \
#       --build-arg TORCH_CUDA_ARCH_LIST="7.5;8.0;8.6;9.0;10.0;12.0+PTX" -t kotune .
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-devel
FROM ${BASE_IMAGE}
# GPUs the DeepSpeed ops are compiled for: `docker build` sees no GPU, and DeepSpeed's own fallback list
# (6.0;6.1;7.0 plus 8.0;8.6;9.0 on CUDA 12) adds nothing for CUDA 13.
ARG TORCH_CUDA_ARCH_LIST="7.0;7.5;8.0;8.6;8.9;9.0+PTX"

# hadolint ignore=DL3064
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    TORCH_EXTENSIONS_DIR=/opt/torch_extensions

WORKDIR /opt/kotune
COPY pyproject.toml constraints.txt README.md ./
COPY src/ src/

# DeepSpeed's CPU Adam (for ZeRO offload) and fused Adam compiled at build time, not at the first run.
RUN TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" DS_BUILD_CPU_ADAM=1 DS_BUILD_FUSED_ADAM=1 \
        pip install --no-build-isolation -c constraints.txt deepspeed==0.19.8 \
    && pip install -c constraints.txt -e . \
    && python -c "import kotune, trl, peft, bitsandbytes, deepspeed"

COPY train/ train/
COPY configs/ configs/
COPY deepspeed/ deepspeed/
COPY launch.sh ./

ENTRYPOINT ["/opt/kotune/launch.sh"]
CMD ["--help"]
