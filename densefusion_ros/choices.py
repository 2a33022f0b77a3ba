"""The values of the pipeline's enumerated settings, shared by :class:`~densefusion_ros.pipeline.PipelineConfig`
and the node's parameter spec (:mod:`densefusion_ros.ros.parameters`).

A module of its own without imports, because the launch files read the parameter spec and should
not load torch to do so.
"""

ICP_MODES = ("none", "after", "verify", "only")
"""The values of ``PipelineConfig.icp``: no ICP, ICP from the network pose, the network pose's
turns checked against the depth image, or ICP from the centroid without the networks."""

INSTANCE_RULES = ("best", "largest", "class", "split")
"""The values of ``PipelineConfig.instances``: how a class's mask becomes object instances."""
