"""The ROS 2 side: ``perception_node`` and the pure pieces it wires to topics.

- ``image_codec``: sensor_msgs Image/CompressedImage <-> NumPy (no cv_bridge)
- ``pointcloud``: the deploy graph's point buffers -> PointCloud2 (x, y, z, rgb, label)
- ``outputs``: the deploy graph's buffers -> the node's output messages
- ``parameters``: the parameter table (descriptors, validation, run-time rules)
- ``frame_slot``, ``stats``, ``diagnostics``: latest-item hand-overs between the stages, running figures, health levels
- ``node``: the lifecycle node and the ``perception_node`` entry point

Only ``node`` needs a running ROS graph; the rest is plain functions tested without one.
"""
