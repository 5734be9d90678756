"""Population mode: K trials of one structure trained as one vectorised model.

``pipeline tune … --population K`` (issue 13). The K members' generators and critics are
stacked (:mod:`pipeline.tuning.population.stacked`, every weight ``(K, …)``), every per-trial
value is a tensor of K entries, and one step of the population is one step of every
member (:mod:`pipeline.tuning.population.trainer`), mirroring
:class:`pipeline.training.trainer.Trainer`
draw for draw so that member k reproduces the single training of its seed.
:mod:`pipeline.tuning.population.forms` finds each plugin's population form (refusing those
without one) and groups trials by structure; :mod:`pipeline.tuning.population.tune` is the
ask-and-tell tuning loop that keeps the population full.
"""
