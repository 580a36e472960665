"""pipelines/flows"""
