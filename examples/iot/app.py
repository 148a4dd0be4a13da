"""CDK entry point: `npx cdk synth` (or `python app.py -c stage=dev`) renders the pipeline."""

from pathlib import Path

from cascata.cdk.app import main

if __name__ == "__main__":
    main(cdk_json=Path(__file__).resolve().parent / "cdk.json")
