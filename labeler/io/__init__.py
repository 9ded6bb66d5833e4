"""Files in and out: reading records with precise errors (file, line, field), importing prompts and pairs,
exporting preference datasets, prompts with verifiable instructions."""
