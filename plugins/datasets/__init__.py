"""Built-in named data sets, one module per data set, each registered through its own entry point.

`data/` holds the files they are generated from, each with the notice it is redistributed under.
"""
