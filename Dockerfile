# phi4mm on a CUDA machine:
#   docker build -t phi4mm .
#   docker run --gpus all -p 7860:7860 -v phi4mm-models:/models phi4mm
# The torch 2.11.0 wheels bundle CUDA 13.0 user-space libraries; the base image brings the
# matching runtime (the host needs a driver for CUDA 13).
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/models \
    PHI4MM_HOST=0.0.0.0 \
    PHI4MM_PORT=7860

# python3-venv: the app lives in its own environment (Ubuntu's python is externally managed);
# libglib2.0-0: OpenCV's one system library the wheels do not bundle;
# gcc, libc6-dev, python3-dev: Triton (torch.compile on the GPU) builds a C launcher for each kernel
# while the app runs, with Python's headers; without them the default, compiled decode path (180
# tok/s on an H200) would fall back to the dynamic one (51), as engine/toolchain.py checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libglib2.0-0 gcc libc6-dev python3-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# The same pins as pyproject.toml (tests/test_dockerfile.py keeps them equal), in their own layer
# so code changes do not reinstall 5 GB of wheels.
RUN pip install \
    torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 \
    transformers==5.23.0 peft==0.21.2 accelerate==1.15.0 bitsandbytes==0.50.2 \
    gradio==6.31.0 openai==3.57.0 prometheus-client==0.26.0 llguidance==1.9.1 \
    soundfile==0.14.0 av==18.1.0 pillow==12.3.0 opencv-python-headless==5.0.0.93 \
    numpy==2.4.6 tqdm==4.70.1

WORKDIR /opt/phi4mm
COPY pyproject.toml README.md ./
COPY app app
COPY engine engine
COPY ui ui
COPY prompts prompts
COPY safety safety
COPY core core
COPY media media
COPY tooling tooling
RUN pip install --no-deps .

# Never run as root. Ubuntu's image already has uid 1000 (ubuntu), so ours is 10001.
RUN useradd --create-home --uid 10001 phi4mm && mkdir -p /models && chown phi4mm /models
USER phi4mm

# Downloaded weights (about 12 GB) survive container restarts here.
VOLUME ["/models"]
EXPOSE 7860

# Loading the model takes minutes on the first run (download) and about a minute after.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/health', timeout=4)"

CMD ["phi4mm", "serve"]
