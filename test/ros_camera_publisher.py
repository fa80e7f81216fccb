"""A stand-alone camera process for the multi-process node tests and the node benchmark.

Publishes ``--count`` camera-like frames (rgb8, ``--width`` x ``--height``) at ``--rate`` Hz on
``--topic`` once a subscriber has matched. Frame i carries stamp (2000 + i, i * 1000) and frame_id
``camera_i``, so a receiver can check that outputs carry their input's header. Prints one line per
frame: ``sent <i> <monotonic publish time>``, then ``done``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", default="image", help="image topic")
    parser.add_argument("--count", type=int, default=30, help="frames to publish")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--width", type=int, default=640, help="frame width")
    parser.add_argument("--height", type=int, default=480, help="frame height")
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable", help="publisher QoS reliability")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a subscriber")
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from mtl_perception.inference.sample_images import sample_image
    from mtl_perception.inference.image_codec import array_to_image_msg

    rclpy.init()
    node = rclpy.create_node("camera_publisher")
    policy = ReliabilityPolicy.RELIABLE if args.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    publisher = node.create_publisher(Image, args.topic, QoSProfile(depth=5, reliability=policy))
    frames = [sample_image(args.height, args.width, seed=i) for i in range(min(args.count, 8))]
    deadline = time.monotonic() + args.wait
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print("no subscriber", flush=True)
            return 2
        time.sleep(0.05)
    time.sleep(0.5)  # let discovery settle on both sides
    period = 1.0 / args.rate
    start = time.monotonic()
    for i in range(args.count):
        header = Header(frame_id=f"camera_{i}")
        header.stamp.sec, header.stamp.nanosec = 2000 + i, i * 1000
        msg = array_to_image_msg(np.ascontiguousarray(frames[i % len(frames)]), "rgb8", header)
        target = start + i * period
        time.sleep(max(0.0, target - time.monotonic()))
        publisher.publish(msg)
        print(f"sent {i} {time.monotonic():.6f}", flush=True)
    time.sleep(1.0)  # reliable delivery of the last frames
    print("done", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
