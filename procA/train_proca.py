"""Stage 3: ProCA training (supervised source loss + prototype contrast on source and target)."""

from procA.train import stage_command

main = stage_command("proca", __doc__)

if __name__ == "__main__":
    main()
