"""fcam_deploy.bench"""
