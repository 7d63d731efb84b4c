"""ROS-free install of the samfusion library and the `samfusion` command line.

In a ROS 2 workspace the package is built by colcon through CMakeLists.txt instead; this file
serves `pip install .` for offline processing, the pure core and the LLM fusion client.
"""
from glob import glob

from setuptools import find_packages, setup

setup(
    name="samfusion",
    version="0.1.0",
    description="Prompted segmentation for cameras and LiDAR, labeled clouds and LLM fusion",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"samfusion": ["py.typed"]},
    # The interface definitions, for reading and writing bags with our message types offline.
    data_files=[("share/sam_fusion/msg", glob("msg/*.msg")), ("share/sam_fusion/srv", glob("srv/*.srv"))],
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "httpx>=0.27",
        "pillow>=10",
    ],
    extras_require={
        "sam": ["torch>=2.4", "transformers>=5.0"],
        "3d": ["open3d>=0.18"],
        "bags": ["rosbags>=0.10"],
        "test": ["pytest>=8", "hypothesis>=6", "pytest-timeout>=2"],
    },
    entry_points={"console_scripts": ["samfusion = samfusion.cli:main"]},
)
