"""Regional statistics and the per-run and cohort tables built from them."""
