"""vla.policies: the LeRobot policy plugin `llada_vla` (configuration / modeling / processor).

Importing this package registers the config (`--policy.type=llada_vla`) and the processor
steps, as LeRobot's `--policy.discover_packages_path=vla.policies` expects. The modeling
module is imported lazily by LeRobot's factory (it follows the naming convention).
"""

from .configuration_llada_vla import LLaDAVLAConfig
from .processor_llada_vla import make_llada_vla_pre_post_processors

__all__ = ["LLaDAVLAConfig", "make_llada_vla_pre_post_processors"]
