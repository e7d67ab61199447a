"""Validation: real timed steps on this machine (``step``), one process or many through the
standard launcher (``launch``, ``worker``), measured memory (``memory``) and the comparison with
the prediction (``compare``)."""
