"""What a run shows a person: per-class scores, the confusion matrix and misclassified rows
(`class_report`), and PNG charts of leaderboards, layer probes and confusion matrices
(`charts`). Reads scores and predictions, never the store."""
