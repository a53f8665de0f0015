"""toonlab: a lab for cartoon faces (StyleGAN2 with fused CUDA ops, fine-tuning, inversion, translation)."""

from setuptools import setup

PACKAGES = ["ops", "toonlab", "losses", "stylegan2", "translation", "metrics", "finetune", "inversion"]

setup(
    name="toonlab",
    version="0.1.0",
    description="StyleGAN2 cartoon-face lab: fused CUDA ops, FreezeSG fine-tuning, inversion, AnimeGAN translation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    # CUDA sources are compiled on first use (ops/_build.py), so they ship as package data.
    package_data={"ops": ["*.cu", "*.cpp", "*.h", "*.cuh"], "toonlab": ["assets/*.pt", "assets/*.json", "assets/*.html"]},
    install_requires=[
        "torch>=2.1",
        "numpy",
        "scipy",
        "pillow",
        "click>=8.1",
        "tqdm",
        "ninja",
        "lmdb",
        "tensorboard",
        # inversion: perceptual loss, dlib face landmarks (+ the 68-point model), the bundled demo photo
        "lpips",
        "dlib-bin",
        "face_recognition_models",
        "scikit-image",
        # translation: edges and video (OpenCV), ffmpeg for audio, ONNX export and runtime
        "opencv-python-headless",
        "imageio-ffmpeg",
        "onnx",
        "onnxruntime",
        "onnxscript",  # torch.onnx.export(dynamo=True)
        # metrics: Inception features for FID/KID
        "torch-fidelity",
        # model files: safetensors snapshots (weights + JSON config, no code)
        "safetensors",
    ],
    extras_require={
        # pytest-timeout: a hung test fails with every thread's stack instead of eating CI's 90 minutes.
        "test": ["pytest", "pytest-timeout", "selenium"],
    },
    entry_points={"console_scripts": ["toonlab=toonlab.cli:main"]},
)
