"""A private ROS graph for one process and its children: its own ROS_DOMAIN_ID, localhost-only discovery."""
from __future__ import annotations

import os
from typing import MutableMapping


def isolate_ros_domain(offset: int = 0, environ: MutableMapping[str, str] | None = None) -> int:
    """Set a private ROS_DOMAIN_ID (1..100, from the pid and ``offset``) and localhost-only discovery.

    Call it before ``rclpy.init`` and before starting child processes: they inherit the environment.
    Different ``offset`` values give the graphs of one process (e.g. one per test module) different domains.
    """
    env = os.environ if environ is None else environ
    domain = 1 + (os.getpid() * 7 + offset) % 100
    env["ROS_DOMAIN_ID"] = str(domain)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    return domain
