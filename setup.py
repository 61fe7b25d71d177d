from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "densenet_trt" / "version.py").read_text(), version)

onnx = ["onnx>=1.16", "onnxscript>=0.5", "onnxruntime>=1.20"]
openvino = ["openvino>=2025.0"]
plot = ["matplotlib>=3.7"]
# ModelOpt 0.47 imports requests and huggingface_hub without declaring them.
quantize = ["nvidia-modelopt==0.47.0", "requests>=2.28", "huggingface_hub>=0.20"]
# NNCF: OpenVINO's own quantizer, a row of scripts/int8_benchmark.py (whose test is in the slow tier).
bench = ["nncf>=3.0"]
# PyTriton bundles a real tritonserver (2.51.0, Python backend) for `densenet-trt serve`; it
# needs numpy<2. tritonclient[all]: the HTTP and gRPC clients of the load sweep.
serve = ["nvidia-pytriton==0.7.0", "numpy>=1.24,<2", "tritonclient[all]>=2.40"]

setup(
    name="densenet-trt",
    version=version["__version__"],
    description="DenseNets compiled into fast, verified inference engines (Torch-TensorRT, ONNX Runtime, OpenVINO)",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["densenet_trt", "densenet_trt.*"]),
    # torchvision's ImageNet class names, recorded in the manifest of an engine built from its checkpoint.
    package_data={"densenet_trt.model": ["imagenet_categories.txt"]},
    install_requires=[
        # A floor, not a pin: Jetson's PyTorch builds and older GPU machines must run it.
        "torch>=2.11",
        "numpy>=1.24",
        "click>=8.1",
        "safetensors>=0.4",
        "pillow>=10",
    ],
    extras_require={
        "onnx": onnx,
        "openvino": openvino,
        "plot": plot,
        "quantize": quantize,
        "cpu": onnx + openvino + plot + quantize,
        # Torch-TensorRT 2.14.0 brings torch 2.14 and TensorRT 11.1 (NVIDIA's index serves the libraries).
        "tensorrt": ["torch-tensorrt==2.14.0"] + quantize,
        "bench": bench,
        "serve": serve,
        # tritonclient: Triton's model-configuration protobuf, to check export-triton's configs.
        # scikit-learn: the digits the INT8 accuracy tests run on.
        # dllist, psutil: torch-tensorrt 2.14's pure-Python requirements, for the conformance tier,
        # which imports its Python files from the wheel (the wheel itself needs TensorRT's libraries).
        "test": ["pytest>=8", "torchvision>=0.26", "tritonclient[grpc]>=2.40", "scikit-learn>=1.3",
                 "dllist>=2", "psutil>=5.9"]
        + onnx + plot + quantize + bench,
    },
    entry_points={"console_scripts": ["densenet-trt=densenet_trt.console:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
