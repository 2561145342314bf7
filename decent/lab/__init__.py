"""A LISP-Decent lab: n nodes on one bridge in network namespaces, or on loopback."""

from __future__ import annotations

from decent.lab.base import LabNode, NodeView
from decent.lab.bpf import MULTICAST_DROP, loss_program
from decent.lab.common import (
    CAPTURE_WAIT,
    CONTROL_PORT,
    DATA_PORT,
    GROUP,
    GROUP_EID,
    KEY,
    MARKER,
    STATE_DIR,
    WEB_PORT,
    LabError,
    lab_eid,
    lab_eid6,
    netns_unavailable,
)
from decent.lab.loopback import LoopbackLab
from decent.lab.main import lab_main
from decent.lab.netns import NetnsLab
from decent.lab.pcap import Datagram, Frame, ecm_map_request, read_frames, read_pcap

__all__ = [
    "CAPTURE_WAIT",
    "CONTROL_PORT",
    "DATA_PORT",
    "GROUP",
    "GROUP_EID",
    "KEY",
    "MARKER",
    "MULTICAST_DROP",
    "STATE_DIR",
    "WEB_PORT",
    "Datagram",
    "Frame",
    "LabError",
    "LabNode",
    "LoopbackLab",
    "NetnsLab",
    "NodeView",
    "ecm_map_request",
    "lab_eid",
    "lab_eid6",
    "lab_main",
    "loss_program",
    "netns_unavailable",
    "read_frames",
    "read_pcap",
]
