"""Studies: drivers that run codecs or rate control (or read several runs) and write CSV/JSON/
markdown tables beside ``reports/<dataset>/runs/``.

* :mod:`bench.studies.model_count`: one vs several models per image (the seeds' table).
* :mod:`bench.studies.ablation`: two submissions model by model, with BD-rates.
* :mod:`bench.studies.gating`: a channel-gated model against its dense twin (the ECG seed's table).

The report (``bench/report/``) renders their files and never runs them.
"""
