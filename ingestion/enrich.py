"""Enrichment applied to every event before anything is written: IP anonymization and user-agent parsing.

- IP addresses are anonymized the way Google Analytics does it: the last octet of an IPv4 address and the
  last 80 bits of an IPv6 address are zeroed, so an address identifies a network, not a person. It is on by
  default; `ANONYMIZE_IP=false` keeps full addresses (only with a legal basis to store them).
- The user agent is parsed with `ua-parser` (the maintained uap-core rules; the Rust engine when installed)
  into browser / OS / device. Results are cached per distinct string: real traffic has few distinct agents.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import NamedTuple

from ua_parser import parse as _ua_parse

_IPV6_KEEP = ((1 << 128) - 1) ^ ((1 << 80) - 1)  # keep the first 48 bits


class InvalidIp(ValueError):
    """context.ip is present but is not an IPv4 or IPv6 address."""


def _octet(part: str) -> bool:
    return part.isascii() and part.isdigit() and (part == "0" or part[0] != "0") and int(part) < 256


@lru_cache(maxsize=65536)
def anonymize_ip(value: str) -> str:
    """`203.0.113.77` -> `203.0.113.0`; `2001:db8:85a3:8d3:1319:8a2e:370:7348` -> `2001:db8:85a3::`."""
    parts = value.split(".")
    # fast path for the common case, a plain dotted quad (no leading zeros, as ipaddress requires)
    if len(parts) == 4 and all(map(_octet, parts)):
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0"
    return _anonymize_ip(value)


def _anonymize_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidIp(f"context.ip {value[:64]!r} is not an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFF00))
    mapped = address.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 address in IPv6 clothing
    if mapped is not None:
        return str(ipaddress.IPv4Address(int(mapped) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(address) & _IPV6_KEEP))


class UserAgent(NamedTuple):
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    device: str | None


def _version(*parts: str | None) -> str | None:
    kept = [part for part in parts if part]
    return ".".join(kept) or None


@lru_cache(maxsize=16384)
def parse_user_agent(value: str) -> UserAgent:
    """Browser, OS and device families (ua-parser names; 'Other' when a part is not recognized)."""
    result = _ua_parse(value[:2048])  # uap-core's own advice: bound what the regexes see
    agent, system, device = result.user_agent, result.os, result.device
    return UserAgent(
        browser=agent.family if agent else "Other",
        browser_version=_version(agent.major, agent.minor, agent.patch) if agent else None,
        os=system.family if system else "Other",
        os_version=_version(system.major, system.minor, system.patch) if system else None,
        device=device.family if device else "Other",
    )


NO_USER_AGENT = UserAgent(None, None, None, None, None)
