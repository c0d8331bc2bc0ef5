"""Stage 5: self-training on offline target pseudo-labels, from ImageNet weights."""

from procA.train import stage_command

main = stage_command("self_training", __doc__)

if __name__ == "__main__":
    main()
