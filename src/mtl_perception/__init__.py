"""mtl_perception: one shared-encoder multi-task network for depth, semantics and normals on ROS 2."""

__version__ = "0.1.0"
