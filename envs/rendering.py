"""Fast offscreen rendering of MuJoCo scenes on CPU: one camera, upright uint8 frames.

This module owns the render settings every suite shares. On a CPU-only machine MuJoCo
renders through EGL with llvmpipe (software OpenGL), where shadows, reflections and
multisampling dominate the cost. Measured on the 2-core development machine at 128 px with a
render per env step (shared REFERENCE.md): ~15 steps/s with MuJoCo's defaults, ~100 with
all three switched off. `make_fast` switches them off on the *model* (so every renderer
and every later scene update keeps them off) and on the renderer's scene flags.

Some cameras render upside down (Meta-World's corner cameras look "backwards" through
their xyaxes); `CameraRenderer(flip=True)` turns such frames upright by flipping both axes.
"""

from __future__ import annotations

import atexit
import weakref

import mujoco
import numpy as np

# Renderers still open at exit are closed while the interpreter is intact; left to the
# garbage collector during shutdown, their EGL teardown prints spurious tracebacks. The
# hook is registered after the first context exists, so it runs before mujoco.egl's own
# atexit `eglTerminate` (atexit runs last-registered first).
_LIVE: weakref.WeakSet[CameraRenderer] = weakref.WeakSet()
_HOOKED = False


def _close_live_renderers() -> None:
    for renderer in list(_LIVE):
        try:
            renderer.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def make_fast(model: mujoco.MjModel) -> None:
    """Switch off the expensive parts of MuJoCo's renderer on `model`, in place.

    Shadows (per-light `castshadow`), reflections (material `reflectance`) and offscreen
    multisampling (`vis.quality.offsamples`) cost ~6x in frame rate on CPU and add nothing
    a policy needs. Physics is unaffected.
    """
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0.0
    model.vis.quality.offsamples = 0


def camera_names(model: mujoco.MjModel) -> list[str]:
    """Names of all cameras defined in `model`, in id order."""
    return [model.camera(i).name for i in range(model.ncam)]


class CameraRenderer:
    """Renders one named camera of a model at a fixed size, upright, as HxWx3 uint8.

    Args:
        model: the MuJoCo model (its render settings are made fast in place).
        camera: a camera name defined in the model.
        height, width: frame size in pixels.
        flip: flip both image axes (for cameras that render upside down).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        camera: str,
        height: int,
        width: int,
        flip: bool = False,
    ) -> None:
        names = camera_names(model)
        if camera not in names:
            raise ValueError(f"unknown camera {camera!r}; this scene defines {names}")
        if height < 8 or width < 8:
            raise ValueError(f"image size {height}x{width} is too small; use at least 8x8")
        make_fast(model)
        # The offscreen framebuffer must be at least as large as the requested frame.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        self.model = model
        self.camera = camera
        self.flip = flip
        self.height = height
        self.width = width
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        _LIVE.add(self)
        global _HOOKED
        if not _HOOKED:
            atexit.register(_close_live_renderers)
            _HOOKED = True

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """Render the current state of `data`; returns a fresh (H, W, 3) uint8 array."""
        self._renderer.update_scene(data, camera=self.camera)
        image = self._renderer.render()
        if self.flip:
            image = image[::-1, ::-1]
        return np.ascontiguousarray(image)

    def segmentation(self, data: mujoco.MjData, objtype: mujoco.mjtObj = mujoco.mjtObj.mjOBJ_GEOM) -> np.ndarray:
        """Ids of the `objtype` objects (geoms by default; sites with mjOBJ_SITE) seen at each pixel,
        (H, W) int32 (-1 elsewhere), in the same orientation as `render`. Used by tests and
        `vla.bench.cameras` to measure how large objects appear."""
        self._renderer.enable_segmentation_rendering()
        try:
            self._renderer.update_scene(data, camera=self.camera)
            seg = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        ids = np.where(seg[..., 1] == int(objtype), seg[..., 0], -1)
        if self.flip:
            ids = ids[::-1, ::-1]
        return np.ascontiguousarray(ids.astype(np.int32))

    def close(self) -> None:
        """Free the OpenGL context (idempotent)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        _LIVE.discard(self)


def renderer_at(current: CameraRenderer | None, model: mujoco.MjModel, camera: str, height: int, width: int,
                flip: bool = False) -> CameraRenderer:
    """`current` if it already renders `model`'s `camera` at `height` x `width`, else a fresh
    renderer (`current` is closed). Envs keep one for frames at another size than their
    observations, e.g. evaluation videos larger than the policy's input."""
    if current is not None and current.model is model and (current.camera, current.height, current.width,
                                                            current.flip) == (camera, height, width, flip):
        return current
    if current is not None:
        current.close()
    return CameraRenderer(model, camera, height, width, flip=flip)


def check_env_args(suite: str, obs_type: str, camera: str, cameras, render_mode: str | None,
                   episode_length: int) -> None:
    """Shared constructor checks of our suites' envs; errors list the valid choices."""
    if obs_type not in ("pixels_agent_pos", "state"):
        raise ValueError(f"unknown obs_type {obs_type!r}; choose 'pixels_agent_pos' or 'state'")
    if camera not in cameras:
        raise ValueError(f"unknown {suite} camera {camera!r}; choose from {list(cameras)}")
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"unsupported render_mode {render_mode!r}; use 'rgb_array' or None")
    if episode_length < 1:
        raise ValueError(f"episode_length must be >= 1, got {episode_length}")
