"""An experiment file: its config tree, its validation and its ``constraints:`` stack."""
