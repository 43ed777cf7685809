"""HTTP controllers: thin, one service call each."""
