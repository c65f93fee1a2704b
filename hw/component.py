"""``ConfiguredComponent``: the base of every component built for one ``AccelConfig``, and
``port_member``: the name of a member repeated per weight-load port."""

from __future__ import annotations

from amaranth.lib import wiring

from sw.config import AccelConfig, require_config

__all__ = ["ConfiguredComponent", "port_member"]


def port_member(name: str, port: int) -> str:
    """The name of member (or submodule) ``name`` of weight-load port ``port``
    (:attr:`sw.config.AccelConfig.weight_ports`): ``name`` for port 0, then ``name1``...;
    so a one-port design keeps its names (``s_axis_wgt``, ``wgt_wr``) and a second port adds
    ``s_axis_wgt1``, ``wgt_wr1``."""
    return name if port == 0 else f"{name}{port}"


class ConfiguredComponent(wiring.Component):
    """A ``wiring.Component`` whose sizes come from one :class:`~sw.config.AccelConfig`.

    Subclasses check ``cfg`` with :func:`sw.config.require_config` before they compute their
    signature from it, then call ``super().__init__(cfg, members)``.

    Parameters
    ----------
    cfg : AccelConfig
    members : dict
        The signature's members, as for ``wiring.Component``.

    Members
    -------
    cfg : AccelConfig
        Read-only.
    latency : int or None
        The subclass's ``LATENCY`` (cycles from input to output, as its docstring defines
        it), or None for a component without one fixed latency.
    """

    LATENCY: int | None = None

    def __init__(self, cfg: AccelConfig, members: dict):
        self._cfg = require_config(cfg)
        super().__init__(members)

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def latency(self) -> int | None:
        return self.LATENCY
