"""Read sample values out of a Prometheus text exposition. Reads no environment variables."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(exposition: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} for every sample called `name`."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(exposition: str, name: str, **labels) -> float:
    """The sample with exactly these labels, or 0.0 when there is none yet."""
    return samples(exposition, name).get(tuple(sorted(labels.items())), 0.0)
