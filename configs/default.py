"""The job the README's first command runs: distil, then reinforce (configs/distil_then_reinforce.py).

SFT of the `tiny` student on 300 program-written rationales of 3-digit addition, then GRPO on every train
question: two stages of one job (trainer "stages"). Bar: RL adds >= 10 points of held-out accuracy to the SFT
checkpoint it starts from, the whole job within 15 minutes on a 2-core CPU; the README has the measured table.
The SFT-only job is configs/sft.py.
"""

import os
import runpy


def get_config(arg=None):
  here = os.path.dirname(os.path.abspath(__file__))
  return runpy.run_path(os.path.join(here, "distil_then_reinforce.py"))["get_config"](arg)
