"""What happens to a received message before the 250: decide, then commit.

    pipeline.py    Pipeline.accept(): decide, commit, the typed outcome
    decide.py      inspection + the policy → the pipeline's Decision
    replay.py      `guard policy replay`: a policy against past mail
"""
