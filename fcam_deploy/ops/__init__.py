"""fcam_deploy.ops"""
