"""`pawstream demo` (`make demo`): train if needed, start the local stack, classify a sample of
labelled photos through the API with feedback, and show live results, throughput and accuracy.
"""
