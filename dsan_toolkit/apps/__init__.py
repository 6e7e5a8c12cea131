"""Applications built on the whole toolkit, above ``bench`` and ``audit``: ``dsan demo``
(:mod:`~dsan_toolkit.apps.demo`) and ``dsan score`` (:mod:`~dsan_toolkit.apps.score`)."""
