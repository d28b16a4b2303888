"""models.list / models.get and the model catalogue: which models exist, where their weights are, how names
resolve."""
