"""Jobs on top of the stages: train, backtest and demo (pipeline) and tuning. Only the CLI imports them."""
