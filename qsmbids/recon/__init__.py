"""Pure numerical QSM algorithms on numpy arrays: no file I/O, no nipype."""
