"""Test support for ROS graphs: isolated domains, process helpers."""


def flatten(table: dict, prefix: str = '') -> dict:
    """A ROS parameter table as ``{'driver.controller_rate_hz': value, ...}`` (nested keys dotted, as
    rcl reads them)."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat
