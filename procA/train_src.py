"""Stage 1: source-only training (CE + Lovász) on the labelled source domain."""

from procA.train import stage_command

main = stage_command("source_only", __doc__)

if __name__ == "__main__":
    main()
