"""The job the README's first command runs. For now the SFT job (configs/sft.py); the RL issue turns it
into distil-then-reinforce."""

import os
import runpy


def get_config(arg=None):
  sft = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sft.py"))
  return sft["get_config"](arg)
