"""rosbag2 tools: read and write bags through ``rosbags``, guess topics, match stamps, replay into ROS.

Modules: ``conventions`` (topic names the tools write and expect), ``io`` (reader/writer with one-line
errors and atomic output), ``messages`` (NumPy <-> rosbags message objects), ``topics`` (choosing the
camera, ground-truth and prediction topics of a bag), ``matching`` (header-stamp matching with a
tolerance), ``make`` (datasets -> bags), ``replay`` (live replay and recording),
``evaluation`` (bag-eval) and ``headline``. The commands are in ``mtl_perception/cli/bags.py``.
"""
