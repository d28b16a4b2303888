"""The model catalog: which models exist, where their weights are, and how names resolve to them."""
