"""The ROS 2 side: ``perception_node`` and the pure pieces it wires to topics.

- ``image_codec``: sensor_msgs Image/CompressedImage <-> NumPy (no cv_bridge)
- ``camera_info``: CameraInfo validation and scaling to the output resolution
- ``pointcloud``: depth + intrinsics -> PointCloud2 (x, y, z, rgb, label)
- ``outputs``: predictions -> the node's output messages
- ``parameters``: the parameter table (descriptors, validation, run-time rules)
- ``frame_slot``, ``stats``, ``diagnostics``: latest-frame hand-over, running figures, health levels
- ``node``: the lifecycle node and the ``perception_node`` entry point

Only ``node`` needs a running ROS graph; the rest is plain functions tested without one.
"""
