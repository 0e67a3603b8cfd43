"""Pinhole cameras shared by the rendering methods: intrinsics, extrinsics, projection and pixel rays.

Convention (OpenCV, as COLMAP, gsplat and NeuMan use it): the camera looks down its +z axis, +x is right
and +y is down in the image. A world point ``X`` maps to camera coordinates ``R @ X + t``
(``R``, ``t`` = world-to-camera), then to pixels ``(fx * x / z + cx, fy * y / z + cy)``. Pixel ``(i, j)``
(column, row) covers ``[i, i + 1) x [j, j + 1)``; its centre is ``(i + 0.5, j + 0.5)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Camera", "look_at", "orbit_cameras", "pixel_centers"]


@dataclass(frozen=True)
class Camera:
    """One pinhole camera.

    Attributes
    ----------
    R, t:
        World-to-camera rotation ``(3, 3)`` and translation ``(3,)`` (float tensors).
    fx, fy, cx, cy:
        Focal lengths and principal point in pixels.
    width, height:
        Image size in pixels.
    """

    R: torch.Tensor
    t: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if tuple(self.R.shape) != (3, 3) or tuple(self.t.shape) != (3,):
            raise ValueError(f"Camera: R must be (3, 3) and t (3,), got {tuple(self.R.shape)} and "
                             f"{tuple(self.t.shape)}")
        if self.width <= 0 or self.height <= 0 or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"Camera: width, height, fx, fy must be positive, got {self.width}, {self.height}, "
                             f"{self.fx}, {self.fy}")

    # -- geometry ---------------------------------------------------------------------------------------
    @property
    def center(self) -> torch.Tensor:
        """Camera centre in world coordinates, ``-R^T t``."""
        return -self.R.T @ self.t

    @property
    def K(self) -> torch.Tensor:
        """The 3 x 3 intrinsic matrix (same dtype as ``R``)."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
                            dtype=self.R.dtype)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Camera:
        """A copy with ``R`` and ``t`` moved / cast."""
        return Camera(self.R.to(device=device, dtype=dtype), self.t.to(device=device, dtype=dtype),
                      self.fx, self.fy, self.cx, self.cy, self.width, self.height)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """``(..., 3)`` world points -> camera coordinates."""
        return points @ self.R.T.to(points) + self.t.to(points)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., 3)`` world points -> (pixel coordinates ``(..., 2)``, depth ``(...,)``).

        Points behind the camera get meaningless pixels; callers cull them by depth.
        """
        cam = self.world_to_camera(points)
        z = cam[..., 2]
        safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
        u = self.fx * cam[..., 0] / safe + self.cx
        v = self.fy * cam[..., 1] / safe + self.cy
        return torch.stack((u, v), dim=-1), z

    def rays(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays through every pixel centre: origins and unit directions, each ``(height, width, 3)``."""
        uv = pixel_centers(self.width, self.height, dtype=dtype)
        d_cam = torch.stack(((uv[..., 0] - self.cx) / self.fx, (uv[..., 1] - self.cy) / self.fy,
                             torch.ones_like(uv[..., 0])), dim=-1)
        d_world = d_cam @ self.R.to(dtype)  # R^T applied to row vectors
        d_world = d_world / d_world.norm(dim=-1, keepdim=True)
        origin = self.center.to(dtype).expand_as(d_world)
        return origin, d_world

    def view_dirs(self, points: torch.Tensor) -> torch.Tensor:
        """Unit directions from ``points`` (..., 3) towards the camera centre (the outgoing direction)."""
        d = self.center.to(points) - points
        return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def scaled(self, factor: float) -> Camera:
        """The same camera at ``factor`` times the resolution (e.g. 0.5 for half size)."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return Camera(self.R, self.t, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, w, h)

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready form (lists of floats)."""
        return {"R": self.R.tolist(), "t": self.t.tolist(), "fx": self.fx, "fy": self.fy, "cx": self.cx,
                "cy": self.cy, "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict, dtype: torch.dtype = torch.float32) -> Camera:
        """Inverse of :meth:`to_dict`; a missing field is named in the error."""
        missing = [k for k in ("R", "t", "fx", "fy", "cx", "cy", "width", "height") if k not in d]
        if missing:
            raise KeyError(f"camera dict lacks field(s) {missing}")
        return cls(torch.tensor(d["R"], dtype=dtype), torch.tensor(d["t"], dtype=dtype), float(d["fx"]),
                   float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]))


def pixel_centers(width: int, height: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(height, width, 2)`` pixel-centre coordinates ``(x + 0.5, y + 0.5)``."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype) + 0.5, torch.arange(width, dtype=dtype) + 0.5,
                            indexing="ij")
    return torch.stack((xs, ys), dim=-1)


def look_at(eye, target, up=(0.0, 1.0, 0.0), *, fov_deg: float = 30.0, width: int = 256, height: int = 256,
            dtype: torch.dtype = torch.float32) -> Camera:
    """A camera at ``eye`` looking at ``target``; ``up`` is the world direction that appears up in the image.

    The vertical field of view is ``fov_deg``; square pixels, principal point at the image centre.
    """
    eye_t = torch.as_tensor(eye, dtype=torch.float64)
    target_t = torch.as_tensor(target, dtype=torch.float64)
    up_t = torch.as_tensor(up, dtype=torch.float64)
    forward = target_t - eye_t
    if forward.norm() < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up_t)  # image +x; up appears as image -y
    if right.norm() < 1e-9:
        raise ValueError("look_at: the up vector is parallel to the viewing direction")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    R = torch.stack((right, down, forward))  # rows: camera axes in world coordinates
    t = -R @ eye_t
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return Camera(R.to(dtype), t.to(dtype), f, f, width / 2, height / 2, width, height)


def orbit_cameras(n: int, *, radius: float, target=(0.0, 0.0, 0.0), elevation_deg: float = 0.0,
                  azimuth_range_deg: tuple[float, float] = (0.0, 360.0), up=(0.0, 1.0, 0.0),
                  fov_deg: float = 30.0, width: int = 256, height: int = 256, endpoint: bool = False,
                  dtype: torch.dtype = torch.float32) -> list[Camera]:
    """``n`` cameras on a circle of ``radius`` around ``target`` (y up), looking at it.

    Azimuth 0 is on the +z axis (in front of a face that looks down +z), increasing towards +x.
    ``endpoint`` includes the last azimuth of the range (useful for a partial arc; not for a full turn).
    """
    lo, hi = azimuth_range_deg
    if n == 1:
        azimuths = [(lo + hi) / 2]
    else:
        steps = n - 1 if endpoint else n
        azimuths = [lo + (hi - lo) * i / steps for i in range(n)]
    el = math.radians(elevation_deg)
    cams = []
    tx, ty, tz = (float(v) for v in target)
    for az_deg in azimuths:
        az = math.radians(az_deg)
        eye = (tx + radius * math.cos(el) * math.sin(az), ty + radius * math.sin(el),
               tz + radius * math.cos(el) * math.cos(az))
        cams.append(look_at(eye, target, up, fov_deg=fov_deg, width=width, height=height, dtype=dtype))
    return cams
