"""ament_python package set-up: installs the src/ package, launch/config/model files and executables."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mtl_perception"
# scipy: only the tests (and tools/) read .mat files with it
TEST_REQUIRES = ["pytest>=7.4.4", "pytest-xdist>=3.8.0", "scipy>=1.10", "hypothesis>=6.170.15"]
# the native TensorRT backend takes device memory, streams and the GPU's identity from the CUDA runtime through
# cuda-python (cuda.bindings.runtime, from 12.6.2): 12.x for CUDA 12 (JetPack 6.1+), 13.x for CUDA 13 (JetPack 7)
TENSORRT_REQUIRES = ["cuda-python>=12.6.2"]
# bag-eval --executor ray: evaluating a fleet's bags on a Ray cluster (never imported by the node)
FLEET_REQUIRES = ["ray>=2.60.0"]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Multi-task depth, semantics and normals perception node for ROS 2 with offline tools",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={PACKAGE: ["data/resources/*.json", "inference/resources/*.json", "evaluation/resources/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.json")),
    ],
    python_requires=">=3.10",
    # Floors: the versions in constraints/minimum.txt, which `make test-min` installs and tests (torch
    # excepted: its floor is read from the API the exporter calls, see that file). rclpy and the message
    # packages come from the ROS distribution (package.xml), not from here.
    install_requires=[
        "numpy>=1.26.4",
        "torch>=2.5",
        "onnx>=1.17",
        "onnxscript>=0.6.0",
        "onnxruntime>=1.17",
        "onnxconverter-common>=1.16.0",
        "protobuf>=3.20.3",
        "opencv-python-headless>=4.6.0.66",
        "pyyaml>=6.0.1",
        "pydantic>=2.5.3",
        "tqdm>=4.60",
        "rosbags>=0.11.0",
        "h5py>=3.8",
        "matplotlib>=3.7",
        "tensorboard>=2.14",
    ],
    # `colcon test` runs pytest only when setup.py names it here (otherwise unittest, which finds nothing);
    # colcon reads extras_require["test"] as well as the older tests_require, which setuptools >= 72 rejects.
    extras_require={"test": TEST_REQUIRES, "tensorrt": TENSORRT_REQUIRES, "fleet": FLEET_REQUIRES},
    zip_safe=False,
    maintainer="mtl_perception maintainers",
    maintainer_email="maintainers@mtl-perception.dev",
    entry_points={
        "console_scripts": [
            "mtl-perception = mtl_perception.cli:main",
            "perception_node = mtl_perception.ros.node:main",
        ],
    },
)
