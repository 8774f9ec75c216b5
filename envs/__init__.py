"""vla.envs: MuJoCo simulation suites (see issue: simulation suites)."""
