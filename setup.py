"""ament_python package set-up: installs the src/ package, launch/config/model files and executables."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mtl_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Multi-task depth, semantics and normals perception node for ROS 2 with offline tools",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={PACKAGE: ["data/resources/*.json", "inference/resources/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.json")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "torch>=2.1",
        "onnx>=1.16",
        "onnxruntime>=1.17",
        "opencv-python-headless>=4.8",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "rosbags>=0.10",
        "h5py>=3.8",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "tensorboard>=2.14",
    ],
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
